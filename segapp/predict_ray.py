"""`segapp predict --cluster ray`: the same job on Ray Data, on this machine or across a Ray cluster.

The driver does what the single-process path does before and after the images (:func:`segapp.predict_files.begin`:
inputs listed once, output names planned, INPUT guarded, what ``--resume`` keeps; :class:`segapp.predict.Tally`:
the summary in input order, the progress bar, the exit status). In between, Ray Data streams the files through two
stages:

1. decoding tasks: :func:`segapp.images.prepare` on each file, in parallel;
2. an actor pool (:class:`SegmentFiles`, one model load per actor): scale normalisation, the net on batches of one
   shape, postprocessing and the atomic writes of the outputs, with the very functions of the single-process path
   (:func:`segapp.predict.segment`, :func:`~segapp.predict.complete`), so masks and rows are the same bytes.

Each batch's summary rows come back to the driver, which appends them to the summary as they arrive (so a killed
driver loses only the rows in flight, and ``--resume`` redoes those files). A killed worker is restarted by Ray and
its batch retried (``max_restarts``, ``max_task_retries``); outputs are atomic, so a retried batch rewrites whole
files. Ray is imported here only, and only when asked for: it is an optional extra (``pip install 'segapp[ray]'``).
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from dataclasses import replace
from pathlib import Path

from .classes import SegappError
from .images import prepare
from .predict import Tally, complete, drive, inference_config, reason, segment, whole
from .predict_files import PredictConfig, begin
from .predict_inputs import UsageError
from .predict_outputs import row_for
from .predict_plan import Item

INSTALL_HINT = "pip install 'segapp[ray]' (or pip install 'ray[data]>=2.9')"
ACTOR_CPUS = 0.75  # Ray CPUs one segmenter actor reserves; each decoding task reserves the rest of a CPU:
DECODE_CPUS = 0.25  # whole-CPU reservations deadlock, as one actor per CPU leaves no CPU to decode a file on
MAX_TASK_RETRIES = 3  # a batch whose worker died is run again this often (a restarted actor each time)


class RayMissing(SegappError):
    """``--cluster ray`` without Ray installed: one line saying how to install it (exit 2)."""


class ClusterError(SegappError):
    """The Ray job failed as a whole (cluster gone, a batch that kills every worker it runs on)."""


def import_ray():
    """Ray, imported on first use only (plain ``segapp predict`` never loads it)."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library: a plain `pip install ray` lacks its dependencies)
    except ImportError as e:
        raise RayMissing(f"--cluster ray needs Ray Data, which is not installed ({e.name or e}); {INSTALL_HINT}") \
            from None
    return ray


def connect(ray, cfg: PredictConfig) -> bool:
    """Joins ``--ray-address`` or starts a local Ray instance with ``--ray-cpus`` CPUs; an instance this process is
    already connected to (a notebook, a test) is used as it is. Returns whether this call connected."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if cfg.ray_address:
        try:
            ray.init(address=cfg.ray_address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterError(f"cannot join the Ray cluster at {cfg.ray_address} ({' '.join(str(e).split())[:200]}); "
                               "start it with `ray start --head` (a cluster with token authentication also needs "
                               "RAY_AUTH_MODE=token and its token; see docs/predict.md) or drop --ray-address to run "
                               "on this machine") from None
    else:
        ray.init(address="local", num_cpus=local_cpus(cfg), **quiet)  # never a `ray start` one
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-dataset INFO lines; the driver has its own bar
    return True


def actor_count(ray, cfg: PredictConfig) -> int:
    """``--ray-actors``, or one segmenter actor per CPU of the cluster (joined, or about to be started); refused
    when the actors would leave no CPU for the decoding tasks (the job would wait forever)."""
    cpus = float(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else local_cpus(cfg)
    most = max(1, int((cpus - DECODE_CPUS) / ACTOR_CPUS + 1e-9))
    n = cfg.ray_actors or max(1, min(most, int(cpus)))
    if n > most:
        raise UsageError(f"--ray-actors {n}: a cluster of {cpus:g} CPUs runs at most {most} segmenter actors "
                         f"({ACTOR_CPUS} CPU each, and decoding needs {DECODE_CPUS}); give fewer or add machines")
    return n


def local_cpus(cfg: PredictConfig) -> int:
    """CPUs of the local Ray instance: ``--ray-cpus``, else every core (Ray's own default)."""
    return cfg.ray_cpus or os.cpu_count() or 1


def absolute(item: Item) -> Item:
    """``item`` with absolute paths: Ray workers do not share the driver's working folder."""
    return replace(item, src=Path(os.path.abspath(item.src)),
                   outs={k: Path(os.path.abspath(p)) for k, p in item.outs.items()})


def decode(batch: dict) -> dict:
    """Stage 1 (Ray tasks): decodes and normalises each file; a bad file carries its reason instead."""
    prepared, errors = [], []
    for blob in batch["item"]:
        item = pickle.loads(blob)
        try:
            prepared.append(pickle.dumps(prepare(item.src, item.rel), protocol=pickle.HIGHEST_PROTOCOL))
            errors.append("")
        except Exception as e:  # one bad file is reported, the job goes on
            prepared.append(b"")
            errors.append(reason(e, item))
    return {"item": list(batch["item"]), "prepared": prepared, "error": errors}


class SegmentFiles:
    """Stage 2 (Ray actors): one segmenter per actor, loaded once; each call takes a batch of decoded files and
    returns their summary rows (JSON), their outputs written."""

    def __init__(self, weights: str | None, inference, out: Path, alpha: float, compress_level: int):
        from .inference import Segmenter

        self.segmenter, self.out = Segmenter(weights, inference), out
        self.alpha, self.compress_level = alpha, compress_level  # what write_outputs needs of the run's options

    def __call__(self, batch: dict) -> dict:
        import json

        seg, out, rows = self.segmenter, self.out, []
        buckets: dict[tuple[int, int], list] = {}
        ready = []
        for blob, data, error in zip(batch["item"], batch["prepared"], batch["error"]):
            item = pickle.loads(blob)
            if error:
                rows.append(row_for(item, out, status=f"error: {error}"))
                continue
            try:
                n = seg.preprocess(pickle.loads(data))
            except Exception as e:  # costs this file only
                rows.append(row_for(item, out, status=f"error: {reason(e, item)}"))
                continue
            if seg.needs_more_than_one_pass(n):
                ready += whole(seg, item, n, out, rows.append)
            else:
                buckets.setdefault(n.image.shape, []).append((item, n))
        for key, group in buckets.items():  # same-shaped inputs share batches, as in Segmenter.segment_inputs
            step = seg.batch_limit(key)
            for k in range(0, len(group), step):
                ready += segment(seg, group[k : k + step], out, rows.append)
        rows += [complete(seg, item, result, out, self.alpha, self.compress_level) for item, result in ready]
        return {"row": [json.dumps(r) for r in rows]}


def cause(e: BaseException) -> BaseException | None:
    """The SegappError or OSError a Ray error wraps (a full disk on a worker), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (SegappError, OSError)):
            return e
        e = getattr(e, "cause", None) or e.__cause__
    return None


def run(cfg: PredictConfig) -> int:
    """`segapp predict --cluster ray`: same checks, outputs, summary and exit status as :func:`segapp.predict.run`."""
    ray = import_ray()  # before anything is written: without Ray, one line and exit 2
    from .model import load_pretrained

    inference = inference_config(cfg)
    joined = connect(ray, cfg) if cfg.ray_address else False  # a cluster that is not there: refused, nothing written
    try:
        actors = actor_count(ray, cfg)
        job = begin(cfg)
        load_pretrained(cfg.weights)  # bad or missing weights: the single-process path's one line, before Ray starts
        todo = [absolute(it) for it in job.todo if not it.error]  # the others get their rows from Tally
        started = (connect(ray, cfg) if todo else False) or joined  # nothing left to do: Ray is not started
    except BaseException:
        if joined:
            ray.shutdown()
        raise
    return drive(cfg, job, lambda tally: stream(ray, cfg, inference, job.out, todo, actors, tally),
                 ray.shutdown if started else lambda: None)


def stream(ray, cfg: PredictConfig, inference, out: Path, todo: list[Item], actors: int, tally: Tally) -> None:
    """Builds the Ray Data pipeline over the files left to do and feeds each row to ``tally`` as it arrives."""
    import json

    if not todo:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts files
    ctx.execution_options.preserve_order = False  # rows are put in input order by the summary
    out = Path(os.path.abspath(out))
    weights = os.path.abspath(cfg.weights) if cfg.weights is not None else None
    rows = [{"item": pickle.dumps(it, protocol=pickle.HIGHEST_PROTOCOL)} for it in todo]
    with warnings.catch_warnings():  # max_restarts / max_task_retries as plain remote args: deprecated in 2.5x
        warnings.simplefilter("ignore")
        ds = ray.data.from_items(rows).map_batches(decode, batch_size=cfg.batch_size, num_cpus=DECODE_CPUS)
        ds = ds.map_batches(
            SegmentFiles, batch_size=cfg.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=ACTOR_CPUS, max_restarts=-1, max_task_retries=MAX_TASK_RETRIES,
            fn_constructor_kwargs={"weights": weights, "inference": inference, "out": out, "alpha": cfg.alpha,
                                   "compress_level": cfg.compress_level})
    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for batch in batches:
            for text in batch["row"]:
                tally.finish(json.loads(text))
    except (KeyboardInterrupt, SegappError):
        raise
    except Exception as e:  # a Ray error: report what it wraps (a full disk), else the job's failure
        inner = cause(e)
        if inner is not None:
            raise inner from None
        raise ClusterError(f"the Ray job failed ({type(e).__name__}: {' '.join(str(e).split())[:300]}); files "
                           "finished so far are kept: run the same command with --resume to finish") from None
    finally:  # stops the pipeline now (its actors too), not when the iterator is collected: after Ctrl-C, no
        batches.close()  # worker may still be writing when the user runs --resume

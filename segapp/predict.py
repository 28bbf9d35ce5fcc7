"""`segapp predict`: folders, files or quoted patterns of images -> class-index masks, overlays and a summary.

For each input ``INPUT/<rel>/<name>.<ext>`` the run writes, under OUT (with several INPUTs, ``<rel>`` is relative
to their common folder; see :func:`segapp.predict_inputs.gather_inputs`):

* ``masks/<rel>/<name>.png``: 8-bit indexed PNG at the input's size; pixel value = class index
  (0-9 digit, 10 background), with the segapp palette embedded (see :mod:`segapp.classes`);
* ``overlays/<rel>/<name>.png``: the input (as grayscale) with the digits coloured (``--no-overlays``);
* one row per input file in ``summary.csv`` and ``summary.jsonl``; the resolved arguments in ``args.json``.

When two inputs in one folder differ only in their extension (``scan.png``, ``scan.jpg``), each
keeps its extension in its output names (``scan.png.png``, ``scan.jpg.png``) so none replaces another.

Images are decoded and outputs encoded in a thread pool (Pillow, OpenCV and zlib release the
GIL) while the model runs on the chunk of files between them; images of the same size are batched for the
model. Every output file is written to a
temporary name and renamed into place, so an interrupted run leaves no half-written PNG. The
summary is appended to as each file finishes (so ``--resume`` works even after ``kill -9``)
and rewritten atomically, in input order, at the end of the run.

The steps of one file (:func:`segment`, :func:`whole`, :func:`complete`) and the driver's side of a run
(:class:`Tally`: summary, progress bar, final line, exit status) are shared with the Ray Data path
(:mod:`segapp.predict_ray`), so both write the same bytes and the same rows.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .classes import REVIEW_BELOW, needs_review
from .images import ImageError, prepare
from .predict_files import PredictConfig, Run, begin
from .predict_inputs import UsageError
from .predict_outputs import FIELDS, Summary, row_for, write_outputs
from .predict_plan import Item
from .runtime import progress_bar

__all__ = ["PredictConfig", "run"]  # PredictConfig is defined beside begin(), which reads it

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # usage errors (2) are SegappErrors, printed by segapp.cli


def reason(e: BaseException, item: Item) -> str:
    """One-line reason without the file name (the summary has its own column for that)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg.removeprefix(f"{item.rel}: ") if isinstance(e, ImageError) else f"{type(e).__name__}: {msg}"


def run(cfg: PredictConfig) -> int:
    """`segapp predict` as ``cfg`` asks; returns the exit status: 0 every file ok, 1 some file failed, 130
    interrupted. Bad folders or weights and a full disk raise :class:`segapp.classes.SegappError` / ``OSError``,
    which ``segapp.cli`` prints as one line (exit 2)."""
    return predict_folder(cfg)


def inference_config(cfg: PredictConfig):
    """The run's :class:`~segapp.inference.InferenceConfig`, checked before :func:`begin` writes anything: a bad
    value (``--digit-height -3``) is a one-line usage error, not a traceback after args.json was written."""
    from .inference import InferenceConfig

    try:
        return InferenceConfig(rescale=cfg.rescale, digit_height=cfg.digit_height, batch_size=cfg.batch_size,
                               device=cfg.device, amp=cfg.amp, backend=cfg.backend, reader=cfg.reader,
                               drop_words=cfg.drop_words, ink_judge=cfg.ink_judge, deskew=cfg.deskew)
    except ValueError as e:
        flag = "--digit-height" if "digit height" in str(e) else "the model options"
        raise UsageError(f"{flag}: {e}") from None


class Tally:
    """The driver's side of a run, whichever path computes it: the summary (appended per row, rewritten in input
    order at the end), the progress bar (files done / total, files/s), the error lines, the final line and the
    exit status. One place, so the single-process and the Ray paths report alike."""

    def __init__(self, cfg: PredictConfig, job: Run):
        self.cfg, self.job = cfg, job
        self.summary = Summary(job.out, job.done)
        self.bar = progress_bar(total=len(job.items), initial=len(job.done), unit="file", disable=cfg.quiet or None,
                        dynamic_ncols=True, desc="predict")
        self.failed, self.t0 = 0, time.perf_counter()
        for rel, why in job.list_errors.items():  # an unreadable folder is reported like a bad file
            self._add({**dict.fromkeys(FIELDS), "file": rel, "status": f"error: {why}"})
        for item in job.todo:
            if item.error:  # known before decoding (an output name clash, an output that would be an input)
                self.finish(row_for(item, job.out, status=f"error: {item.error}"))

    def _add(self, row: dict) -> None:
        self.summary.add(row)
        if row["status"] != "ok":
            self.failed += 1
            self.bar.write(f"segapp predict: {row['file']}: {row['status'].removeprefix('error: ')}", file=sys.stderr)

    def finish(self, row: dict) -> None:
        """One file's row: into the summary (flushed, for --resume after a kill) and the progress bar."""
        self._add(row)
        self.bar.update()

    def close(self) -> None:
        """Closes the bar and rewrites the summary in input order (also after an interrupt or an error)."""
        self.bar.close()
        self.summary.close([it.rel for it in self.job.items])

    def report(self, interrupted: bool) -> int:
        """Prints the final line (and how to resume after an interrupt); returns the exit status."""
        out, done, rows = self.job.out, self.job.done, self.summary.rows
        seconds = time.perf_counter() - self.t0
        n_new, skipped = len(rows) - len(done) - self.failed, self.job.skipped
        print(f"segapp predict: {len(rows)} of {len(self.job.items)} files summarised ({n_new} predicted, "
              f"{len(done)} already done, {self.failed} failed"
              f"{f', {skipped} non-image or hidden files skipped' if skipped else ''}) "
              f"in {seconds:.1f} s ({n_new / max(seconds, 1e-9):.0f} files/s) -> {out}", file=sys.stderr)
        unsure = [r for r in rows.values() if r.get("status") == "ok" and needs_review(r.get("confidence"))]
        if unsure:  # the readings most worth a person's look (classes.REVIEW_BELOW: most misreads are among them)
            print(f"segapp predict: {len(unsure)} of {len(rows)} readings have a confidence under {REVIEW_BELOW}: "
                  f"check those first (summary.csv, column confidence)", file=sys.stderr)
        if interrupted:
            where = "" if self.cfg.out else f" --out {shlex.quote(str(out))}"  # a numbered default folder: name it
            print(f"segapp predict: interrupted; run again with --resume{where} to finish", file=sys.stderr)
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK


Fail = Callable[[dict], None]  # takes the row of a file the model failed on


def model_failed(item: Item, e: RuntimeError, out, fail: Fail) -> list:
    """Reports a file the model failed on (its row says why); nothing of it goes on to be written."""
    fail(row_for(item, out, status=f"error: model failed ({' '.join(str(e).split())[:200]})"))
    return []


def segment(segmenter, batch: list, out, fail: Fail) -> list:
    """The net on one batch of ``(item, NetInput)`` of one size -> ``[(item, Segmentation or Pending)]``
    (:meth:`~segapp.inference.Segmenter.run`: what the segmenter leaves pending is finished by :func:`complete`, in a
    file thread, so the model's turn is the net alone). If the batch fails (e.g. out of memory) it is retried one
    file at a time and only the file at fault fails (``fail`` gets its row)."""
    try:
        results = segmenter.run([n for _, n in batch])
        return [(item, r) for (item, _), r in zip(batch, results)]
    except RuntimeError as e:
        if len(batch) > 1:
            return [done for one in batch for done in segment(segmenter, [one], out, fail)]
        return model_failed(batch[0][0], e, out, fail)


def whole(segmenter, item: Item, n, out, fail: Fail) -> list:
    """An input that needs several passes of the net (mixed digit sizes, a borderline size estimate): read
    by the segmenter's whole path, as the demo and evaluate read it, in the model's turn."""
    try:
        return [(item, segmenter.segment_inputs([n])[0])]
    except RuntimeError as e:
        return model_failed(item, e, out, fail)


def complete(segmenter, item: Item, result, out, alpha: float, compress_level: int) -> dict:
    """Postprocess (when the model's turn left it to later) and write one file's outputs (``alpha``,
    ``compress_level``: see :func:`~segapp.predict_outputs.write_outputs`): its row."""
    try:
        result = segmenter.finish(result)
    except Exception as e:  # costs this file only
        return row_for(item, out, status=f"error: reading the class map failed ({reason(e, item)})")
    return write_outputs(item, result, out, alpha, compress_level)


def predict_folder(cfg: PredictConfig) -> int:
    from .inference import Segmenter

    inference = inference_config(cfg)
    job = begin(cfg)  # folders, output names, what --resume keeps, args.json (segapp.predict_files)
    segmenter = Segmenter(cfg.weights, inference)
    pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="segapp-predict")
    return drive(cfg, job, lambda tally: pipeline(cfg, job, segmenter, tally, pool),
                 lambda: pool.shutdown(wait=True, cancel_futures=True))


def drive(cfg: PredictConfig, job: Run, work: Callable[[Tally], None], cleanup: Callable[[], None]) -> int:
    """Runs ``work`` (the rows of a run's files, fed to a :class:`Tally`) and ends the run as both paths end it:
    after Ctrl-C or an error too, ``cleanup`` (the file threads, the Ray instance), then the summary rewritten in
    input order; the final line and the exit status (130 after Ctrl-C, with the command that resumes)."""
    tally = Tally(cfg, job)
    interrupted = False
    try:
        work(tally)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        cleanup()
        tally.close()
    return tally.report(interrupted)


def load_all(segmenter, part: list[Item]) -> list[tuple[Item, object, Exception | None]]:
    """Decodes, normalises and scales a slice of a chunk in one task (a task per file cost more in futures and
    thread hand-offs than decoding a 64x84 PNG); a bad file is kept with its exception, the others go on."""
    loaded = []
    for item in part:
        try:
            loaded.append((item, segmenter.preprocess(prepare(item.src, item.rel)), None))
        except Exception as e:  # one bad file is reported, the run goes on
            loaded.append((item, None, e))
    return loaded


def slices(seq: list, k: int) -> list[list]:
    """``seq`` in at most ``k`` contiguous, non-empty slices: one task per file thread."""
    k = max(1, min(k, len(seq)))
    return [seq[i * len(seq) // k : (i + 1) * len(seq) // k] for i in range(k)] if seq else []


def pipeline(cfg: PredictConfig, job: Run, segmenter, tally: Tally, pool: ThreadPoolExecutor) -> None:
    """A pipeline over chunks of files: while the model runs on chunk k (in this thread, the GIL released inside
    ONNX Runtime / torch), the file threads decode chunk k+1 and postprocess and write chunk k-1. The pool runs
    its tasks in order, so chunk k+1's decoding is queued before chunk k's writing and is ready first. Measured
    (docs/speed.md): the model loses some speed to the file threads, but less than taking turns idled them."""
    out, finish = job.out, tally.finish
    todo = [it for it in job.todo if not it.error]  # the others have their rows already (Tally)
    buckets: dict[tuple[int, int], list] = {}
    chunk = 4 * max(cfg.batch_size, cfg.workers)

    def submit_loads(part: list[Item]) -> list[Future]:
        return [pool.submit(load_all, segmenter, sl) for sl in slices(part, cfg.workers)]

    def complete_all(ready: list) -> list[dict]:
        return [complete(segmenter, item, result, out, cfg.alpha, cfg.compress_level) for item, result in ready]

    def run_batch(key: tuple[int, int]) -> list:
        return segment(segmenter, buckets.pop(key), out, finish)

    def finish_written(block: bool) -> None:
        """Summary rows of the writes that are done (all of them when ``block``), oldest first."""
        while writing and (block or writing[0].done()):
            for row in writing.pop(0).result():
                finish(row)

    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    writing: list[Future] = []
    try:
        loading = submit_loads(chunks[0]) if chunks else []
        for k in range(len(chunks)):
            loaded = [x for f in loading for x in f.result()]
            loading = submit_loads(chunks[k + 1]) if k + 1 < len(chunks) else []
            finish_written(block=False)
            ready = []
            for item, prepared, error in loaded:
                if error is not None:
                    finish(row_for(item, out, status=f"error: {reason(error, item)}"))
                elif segmenter.needs_more_than_one_pass(prepared):
                    ready += whole(segmenter, item, prepared, out, finish)
                else:
                    key = prepared.image.shape  # the net's input size after scale normalisation
                    buckets.setdefault(key, []).append((item, prepared))
                    if len(buckets[key]) >= segmenter.batch_limit(key):
                        ready += run_batch(key)
                    elif sum(map(len, buckets.values())) > chunk:  # many different sizes: run the fullest bucket
                        ready += run_batch(max(buckets, key=lambda k: len(buckets[k])))
            if k + 1 == len(chunks):
                for key in list(buckets):
                    ready += run_batch(key)
            writing += [pool.submit(complete_all, sl) for sl in slices(ready, cfg.workers)]
        finish_written(block=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        for f in writing:  # outputs finished before the interrupt still get their summary rows
            if f.done() and not f.cancelled() and f.exception() is None:
                for row in f.result():
                    finish(row)
        raise

"""`segapp predict` before the first image: its checked config, and :func:`begin`, which settles the run.

:func:`begin` resolves the inputs (:mod:`segapp.predict_inputs`), plans and guards the outputs
(:mod:`segapp.predict_plan`), sweeps stale temp files, decides what ``--resume`` keeps and writes args.json; the
outputs themselves are written by :mod:`segapp.predict_outputs`. Kept apart from the inference pipeline in
:mod:`segapp.predict` so each can be read (and tested) alone. The rules these modules enforce together (see
docs/predict.md, "Safety"):

* no output ever lands on an input: OUT inside INPUT is refused, and an output path (or summary, or args.json)
  that names or resolves to the same file as an input is refused;
* existing results are never replaced unless ``--resume`` or ``--overwrite`` says so, and only segapp's own
  temp files (:mod:`segapp.safeio`) are ever deleted;
* ``--resume`` keeps a file's results only when the summary row proves they are current: same input bytes
  (``input_sha256``) and same weights (``weights_sha256``);
* any file name works, including names that are not valid UTF-8 (shown as ``\\xNN`` in the summary).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .classes import RecordedConfig
from .images import IMAGE_EXTENSIONS
from .model import weights_fingerprint
from .predict_inputs import Inputs, UsageError, default_out, gather_inputs, shown
from .predict_outputs import complete_png, read_previous
from .predict_plan import ARGS_JSON, Item, check_folders, input_ids, plan, run_files
from .safeio import HASH_HEX, file_sha256, sweep_temps, write_atomic


def input_fingerprint(path: Path) -> str | None:
    """The ``input_sha256`` column: the first 64 bits of the SHA-256 of the input file's bytes."""
    digest = file_sha256(path)
    return digest[:HASH_HEX] if digest else None


def remove_stale_temps(out: Path, keep: set | None = None) -> int:
    """Deletes the temp files a killed run's atomic writes left in OUT (only segapp's own; never an input)."""
    return sweep_temps([out], [out / "masks", out / "overlays"], keep)


@dataclass
class Run:
    """Everything `segapp predict` settles before the first image is decoded."""

    root: Path
    out: Path
    items: list[Item]
    todo: list[Item]
    done: dict[str, dict]
    skipped: int
    list_errors: dict[str, str]


@dataclass(frozen=True)
class PredictConfig(RecordedConfig):
    """Every argument of `segapp predict` (see its ``--help``), with its defaults, checked on creation.

    ``recorded``: what args.json records besides the run's resolved input, output, file count and weights
    fingerprint. The CLI passes the command's parsed arguments (flag names, ``--threads``, argv); None records this
    config's own fields.
    """

    input: tuple[Path | str, ...] = ()  # folders, files or quoted patterns
    out: Path | str | None = None  # None: runs/predict/<name> (see default_out)
    recursive: bool = True
    hidden: bool = False
    overlays: bool = True
    alpha: float = 0.6
    compress_level: int = 1
    overwrite: bool = False
    resume: bool = False
    weights: Path | str | None = None  # None: the shipped weights/
    device: str = "auto"
    rescale: bool = True
    reader: bool = True  # each digit read again by the weights' digit reader (segapp.reread)
    drop_words: bool = True  # a word with a letter is not read (segapp.words; a reader trained with letters)
    ink_judge: bool = True  # small digits' masks follow the weights' ink judge (segapp.ink_judge)
    deskew: bool = True  # a tilted photo of a number is read turned upright (segapp.tilt)
    digit_height: float | None = None
    amp: str = "auto"
    backend: str = "auto"
    batch_size: int = 64
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    quiet: bool = False
    cluster: str = "none"  # "ray": segapp.predict_ray
    ray_address: str | None = None
    ray_cpus: int | None = None
    ray_actors: int | None = None
    recorded: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        given = [self.input] if isinstance(self.input, (str, os.PathLike)) else list(self.input)
        object.__setattr__(self, "input", tuple(given))
        for flag, value in (("--ray-cpus", self.ray_cpus), ("--ray-actors", self.ray_actors)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")
        alpha = self.alpha
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 <= alpha <= 1):
            raise UsageError(f"--alpha {alpha} is outside 0..1 (0: overlays show the input only, 1: solid colours)")
        self.freeze_record()


def begin(cfg: PredictConfig) -> Run:
    """Checks the folders, plans the outputs, sweeps stale temps, decides what ``--resume`` keeps, and writes
    args.json. Raises :class:`UsageError` before anything is written if the run must not go ahead."""
    inputs = gather_inputs(cfg.input, cfg.recursive, cfg.hidden)  # refuses a missing INPUT or a pattern matching none
    if not inputs.files and not inputs.list_errors:
        named = ", ".join(shown(str(p)) for p in cfg.input)
        raise UsageError(f"{named}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)}"
                         f"{'' if cfg.recursive else ', not in subfolders (--no-recursive)'})")
    fresh = not cfg.out and not (cfg.resume or cfg.overwrite)
    out = Path(cfg.out) if cfg.out else default_out(inputs, reuse=cfg.resume or cfg.overwrite, reserve=fresh)
    try:
        return _begin(cfg, inputs, out)
    except BaseException:
        if fresh:  # the folder reserved for this run, still empty: not left behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _begin(cfg: PredictConfig, inputs: Inputs, out: Path) -> Run:
    files, list_errors, skipped, root = inputs.files, inputs.list_errors, inputs.skipped, inputs.base
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {shown(str(out))} is a file; give a folder")
    if not cfg.out and (cfg.resume or cfg.overwrite):
        print(f"segapp predict: no --out given: {'resuming' if cfg.resume else 'redoing'} the latest run, in "
              f"{shown(str(out))}", file=sys.stderr)
    items = plan(files, root, out, cfg.overlays)
    if items:
        check_folders(inputs.roots, out, items)
    weights = weights_fingerprint(cfg.weights)
    with ThreadPoolExecutor(max(1, min(cfg.workers, 8)), thread_name_prefix="segapp-hash") as pool:
        for it, digest in zip(items, pool.map(lambda it: input_fingerprint(it.src), items)):
            it.input_sha256, it.weights_sha256 = digest, weights
    existing = [p for it in items for p in it.outs.values() if os.path.lexists(p)]
    existing += [p for p in run_files(out) if os.path.lexists(p)]
    if existing and not (cfg.overwrite or cfg.resume):
        raise UsageError(f"{len(existing)} outputs already exist in {shown(str(out))} (e.g. "
                         f"{shown(str(existing[0]))}); nothing was written; use --resume to finish that run or "
                         "--overwrite to redo it")
    if cfg.resume or cfg.overwrite:
        remove_stale_temps(out, input_ids(items))
    previous = read_previous(out) if cfg.resume else {}
    done, stale = {}, 0
    for it in items:
        prev = previous.get(it.rel)
        if it.error or not prev or prev.get("status") != "ok":
            continue
        names = {k: shown(p.relative_to(out).as_posix()) for k, p in it.outs.items()}
        if (it.input_sha256 is None or prev.get("input_sha256") != it.input_sha256
                or prev.get("weights_sha256") != weights
                or any(prev.get(k) not in (None, v) for k, v in names.items())):
            stale += 1  # the input, the weights or the output names changed since: redo it, outputs and all
        elif all(complete_png(p) for p in it.outs.values()):
            done[it.rel] = prev
        else:
            it.reuse = True  # some outputs missing or cut short: write those, keep the complete ones
    if stale:
        print(f"segapp predict: {stale} files done earlier are redone: their input or the weights are not those of "
              "that run (or it predates fingerprints)", file=sys.stderr)
    todo = [it for it in items if it.rel not in done]
    if todo or not (out / ARGS_JSON).exists():  # a finished run resumed again stays untouched
        given = [os.path.realpath(p) if os.path.lexists(p) else os.path.abspath(p) for p in cfg.input]  # patterns
        args = {**cfg.record(), "input": given[0] if len(given) == 1 else given, "out": os.path.realpath(out),
                "files": len(items), "weights_sha256": weights}
        args.pop("run", None)
        text = json.dumps(args, default=lambda v: shown(str(v)), indent=2) + "\n"
        write_atomic(out / ARGS_JSON, text.encode())
    return Run(root, out, items, todo, done, skipped, list_errors)



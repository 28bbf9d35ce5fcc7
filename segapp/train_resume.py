"""Checkpoints and ``--resume``: what a run folder must hold, what a checkpoint must carry, and the refusals.

An ``--out`` that already holds any file a run writes is refused unless ``--resume`` is given, so a run is never
replaced by accident; ``--resume`` continues the run exactly as it was started (its own config from ``last.pt`` or
``args.json``), so a run-defining flag that differs is refused with one line naming it; a Ctrl-C says what was
saved and the command that goes on (:func:`interrupted`). Kept apart from the job (:mod:`segapp.train`) because
these rules are read when something went wrong, not when following a run.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import torch

from .blend import TUNED
from .classes import SegappError
from .model import load_checkpoint
from .train_config import RUN_ARGS, TrainConfig, flag

BLEND_FILES = (TUNED,)  # written only by a fine-tuning run that ends blended (segapp.blend)
# Every file a run writes in --out; any of them already there means a run (or someone's file) is in the way.
RUN_FILES = ("last.pt", "model.safetensors", "config.json", "log.csv", "curve.png", "args.json", "metrics.json",
             "MODEL_CARD.md", "confusion.png", *BLEND_FILES)
RESUME_KEYS = ("model", "config", "optimizer", "scheduler", "epoch", "best", "history", "rng", "args")
# Arguments every resumable run has recorded since checkpoints carry args; a flag added later may be missing
# from an older run's args and gets its "before this flag existed" value where RUN_ARGS are restored.
REQUIRED_RUN_ARGS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "train_size", "val_size", "fixed_train",
                     "augment", "kaggle", "widths", "dice_weight", "amp")


def check_out(out: Path, resume: bool) -> None:
    """Refuses an --out that is a file, or that already holds a run (or any file a run writes) without --resume."""
    if out.exists() and not out.is_dir():
        raise SegappError(f"--out {out} is a file, not a folder; choose another --out")
    if resume:
        return
    found = [n for n in RUN_FILES if os.path.lexists(out / n)]
    if found:
        names = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise SegappError(f"{out} already holds a training run ({names}); nothing was written; pass --resume to "
                          "continue it, or choose another --out")


def load_resumable(out: Path) -> tuple[dict | None, dict]:
    """What ``--resume`` continues from: the checkpoint (None when the run was stopped before its first epoch
    finished) and the run's arguments. One-line errors when there is nothing segapp can continue."""
    path = out / "last.pt"
    if not out.is_dir():
        raise SegappError(f"--resume: {out} does not exist, so there is no run to continue; leave out --resume")
    if not os.path.lexists(path):
        try:  # stopped before its first epoch finished: start it again with the arguments it recorded
            args = json.loads((out / "args.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            args = None
        recorded = isinstance(args, dict) and args.get("command", "train") == "train"  # old args.json name it
        if recorded and all(k in args for k in REQUIRED_RUN_ARGS):
            print(f"no epoch of the run in {out} had finished; starting it again from epoch 1", file=sys.stderr)
            return None, args
        raise SegappError(f"--resume: {path} not found, so there is no run in {out} to continue; leave out --resume "
                          "(with a fresh --out)")
    if not path.is_file():
        raise SegappError(f"--resume: {path} is not a regular file (a folder, pipe or device); not read")
    ckpt = load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if not missing and isinstance(ckpt["args"], dict):
        missing = [f"args.{k}" for k in REQUIRED_RUN_ARGS if k not in ckpt["args"]]
    elif not missing:
        missing = ["args"]
    if missing:
        raise SegappError(f"--resume: {path} is not a resumable training checkpoint (it lacks {', '.join(missing[:4])}"
                          "); it can still be loaded with --weights, but training must start again in another --out")
    return ckpt, ckpt["args"]


# What finish() writes after the last epoch: all there means the run is complete and --resume has nothing to do.
FINISH_FILES = ("metrics.json", "confusion.png", "MODEL_CARD.md")
PATH_ARGS = ("kaggle", "data", "init", "teacher")


def _shown(name: str, v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if name == "widths" and v is not None:
        v = tuple(v)
        return f"{v[0]} (x{len(v)})" if len(set(v)) == 1 else ",".join(map(str, v))
    return str(v)


def _same(name: str, asked, recorded) -> bool:
    if name in PATH_ARGS and asked is not None and recorded is not None:
        return os.path.normpath(asked) == os.path.normpath(recorded)
    if name == "widths":
        return tuple(asked) == tuple(recorded)
    if name == "amp" and isinstance(recorded, bool):  # old checkpoints stored a bool
        recorded = "on" if recorded else "off"
    return asked == recorded


def run_complete(out: Path, cfg: TrainConfig, ckpt: dict | None) -> bool:
    """Whether the run in ``out`` trained all its epochs and was scored (metrics.json, model card): nothing to do."""
    return (ckpt is not None and ckpt["epoch"] >= cfg.epochs
            and all((out / n).is_file() for n in FINISH_FILES))


def check_resume_flags(asked: TrainConfig, recorded: TrainConfig, given, out: Path, complete: bool) -> None:
    """Refuses run-defining flags given with ``--resume`` (``given``: field -> the flag that set it, e.g.
    ``{"epochs": "--epochs"}``) whose value differs from the run's own: --resume continues a run exactly as it was
    started, so such a flag could only be ignored. One line naming the flag; --epochs is explained (the one-cycle
    schedule spans the epochs the run was started with)."""
    for name in RUN_ARGS:
        if name not in given or _same(name, getattr(asked, name), getattr(recorded, name)):
            continue
        label, value, was = given[name], _shown(name, getattr(asked, name)), _shown(name, getattr(recorded, name))
        if label == flag(name) and isinstance(getattr(asked, name), bool):  # --augment / --no-augment, --fixed-train
            label = label if getattr(asked, name) else "--no-" + label[2:]
            what = label
        else:
            what = f"{label} {value}" if label == flag(name) else f"{label} ({flag(name)} {value})"
        if name == "epochs" and complete:
            raise SegappError(f"{what}: the run in {out} is complete ({recorded.epochs} epochs) and its one-cycle "
                              f"learning-rate schedule has ended, so it cannot be extended; to train longer start a "
                              f"new run with --init {out} --out NEW")
        if name == "epochs":
            raise SegappError(f"{what}: the run in {out} was started for {recorded.epochs} epochs and its one-cycle "
                              "learning-rate schedule is fixed to that length, so --resume cannot change it; leave out "
                              f"--epochs to finish the run, then start a new run with --init {out} to train longer")
        raise SegappError(f"{what} differs from the run in {out} ({flag(name)} {was}); --resume continues a run with "
                          f"the arguments it was started with: leave out {label}, or start a new run in another --out")


def resume_command(cfg: TrainConfig) -> str:
    """The command that continues the run of ``cfg`` (how it runs included: device, workers)."""
    how = [f"--device {shlex.quote(cfg.device)}"] if cfg.device != "auto" else []
    how += [f"--workers {cfg.workers}"] if cfg.workers else []
    return " ".join(["segapp train --out", shlex.quote(str(cfg.out)), "--resume", *how])


def interrupted(cfg: TrainConfig) -> str:
    """What a Ctrl-C left on disk in ``cfg.out`` and how to go on, as one line (read from the files themselves)."""
    out = Path(cfg.out)
    try:
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        done, epochs = int(ckpt["epoch"]), int(ckpt["args"]["epochs"])
    except Exception:  # no epoch finished yet (or no run here at all)
        ckpt = None
    if ckpt is None:
        if not (out / "args.json").is_file():
            return "interrupted before training began; nothing was saved"
        return (f"interrupted before the first epoch finished; nothing saved besides {out / 'args.json'}; start it "
                f"again with: {resume_command(cfg)}")
    try:
        meta = json.loads((out / "config.json").read_text())
        best = f"epoch {meta['epoch']}, val mIoU digits {meta['val_miou_digits']:.4f}"
    except Exception:
        best = "best epoch so far"
    where = ("in the final test evaluation" if done >= epochs else f"in epoch {done + 1}/{epochs} (its progress is "
             "lost)")
    return (f"interrupted {where}; saved: {out / 'last.pt'} (epoch {done}/{epochs}, resumable) and the best weights "
            f"{out / 'model.safetensors'} ({best}); resume with: {resume_command(cfg)}")

"""`segapp train`: M2NIST (or a Kaggle-layout pair) -> trained weights, log, curve and model card.

A run is described by one frozen :class:`TrainConfig` (the CLI maps its flags onto it; ``asdict(cfg)`` is
what ``args.json`` and ``last.pt`` record, and what ``--resume`` rebuilds the run from).

Output folder (``--out``, default ``runs/train``):
  config.json + model.safetensors  best epoch by val mean IoU over digits (what every command loads)
  last.pt                          full state for ``--resume`` (model, optimiser, schedule, epoch, RNG)
  log.csv, curve.png               one row per finished epoch; rewritten whole, atomically
  args.json, metrics.json, MODEL_CARD.md
Every file is written to a temp name and renamed, so killing the run at any moment leaves the
previous complete version of each file behind. An --out that already holds any of these files is
refused unless --resume is given: a run is never replaced by accident.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

from . import distributed
from .blend import TUNED, blend_run
from .classes import VOID, SegappError
from .datasets import FreshM2NIST, SegmentationSet, WildM2NIST, train_augment
from .distill import Teacher, shrink
from .evaluate import evaluate  # the engine's validation step (re-exported: segapp.train.evaluate)
from .kaggle import load_kaggle
from .m2nist import fingerprint, make_split
from .model import (
    DilatedNet,
    NetConfig,
    load_checkpoint,
    load_pretrained,
    save_pretrained,
    weights_fingerprint,
)
from .runtime import amp_enabled, autocast, machine, pick_device, progress_bar, training_memory_format
from .safeio import file_id, sweep_temps, write_atomic


class TrainingDiverged(SegappError):
    """The loss became NaN or infinite: training stops before the broken step reaches the weights."""


FINE_TUNE = {"epochs": 4, "lr": 1e-3}  # defaults with --init: a short, gentle schedule from trained weights
FROM_SCRATCH = {"epochs": 16, "lr": 3e-3}


@dataclass(frozen=True)
class TrainConfig:
    """Every argument of a training run, with the defaults of ``segapp train`` (see its ``--help``).

    ``epochs`` and ``lr`` left at None mean 16 epochs at 3e-3 from scratch, 4 at 1e-3 with ``init``
    (:meth:`resolved`). Paths are strings so that ``asdict(cfg)`` goes into JSON and into a
    ``weights_only`` checkpoint as it is.
    """

    # data
    kaggle: str | None = None  # a Kaggle-layout pair (combined.npy + segmented.npy); 10% held out for val
    train_size: int = 10000  # training images per epoch
    val_size: int = 1000  # validation images (M2NIST recipe, val digit pool)
    fixed_train: bool = False  # one fixed set of train_size images instead of fresh compositions each epoch
    augment: bool = True  # albumentations photometric + mild geometric jitter
    data: str | None = None  # a folder dataset: DIR/images/* + DIR/masks/*.png
    mix_recipe: float = 0.0  # with data: this share of each epoch from the M2NIST recipe (+ wild images)
    wild: float = 0.65  # share of real-world-like images per epoch (segapp/synth.py); 0: the M2NIST recipe alone
    # model and optimisation
    widths: tuple[int, ...] = (48,) * 7  # channels per layer (dilations 1-2-4-8-4-2-1)
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None  # peak learning rate of the one-cycle schedule
    init: str | None = None  # fine-tune from these trained weights (their widths are used)
    init_sha256: str | None = None  # fingerprint of init's weights, filled in by the run
    blend: str | float = "auto"  # fine-tuning: final = (1-B) parent + B fine-tuned (segapp.blend); auto picks B
    forget_tolerance: float = 0.002  # blend auto: largest allowed drop of M2NIST val mIoU over digits vs the parent
    teacher: str | None = None  # distil from these trained weights (segapp.distill)
    teacher_sha256: str | None = None  # fingerprint of the teacher's weights, filled in by the run
    distill_weight: float = 1.0  # with teacher: loss += this x T^2 x KL(teacher || student)
    distill_temperature: float = 2.0  # with teacher: T, softening both distributions
    weight_decay: float = 1e-4  # AdamW
    dice_weight: float = 1.0  # loss = CE + dice_weight x Dice
    amp: str | bool = "auto"  # bfloat16 autocast: auto (only where native), on, off (a bool in old checkpoints)
    seed: int = 0  # seeds init, data compositions, augmentation, order
    # run: where and how, not what (on --resume these come from the command line, the rest from the checkpoint)
    out: str = "runs/train"
    resume: bool = False
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"

    def __post_init__(self):
        if isinstance(self.widths, list):  # JSON and old checkpoints store a list
            object.__setattr__(self, "widths", tuple(self.widths))

    def resolved(self) -> TrainConfig:
        """The config with ``epochs`` / ``lr`` filled in (from scratch, or the gentler fine-tuning defaults)."""
        defaults = FINE_TUNE if self.init else FROM_SCRATCH
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    @classmethod
    def from_dict(cls, d: dict, **override) -> TrainConfig:
        """A config from a recorded ``args`` dict (``args.json`` or a checkpoint, old or new): unknown keys (an old
        run's ``command``, ``threads``, ``argv``) are ignored; a flag added later than the run gets the value that
        reproduces what the run did before it existed (:data:`BEFORE_FLAG`), else its default."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for k, v in BEFORE_FLAG.items():
            values.setdefault(k, v)
        return cls(**{**values, **override})


# Fields that are how a run is executed, not what it computes; on --resume they come from the command line.
HOW_ARGS = ("out", "resume", "workers", "device")
# Fields that define the run; on --resume they come from the checkpoint, not the command line.
RUN_ARGS = tuple(f.name for f in fields(TrainConfig) if f.name not in HOW_ARGS)
# Runs from before a flag existed lack it; this value of it reproduces what they did.
BEFORE_FLAG = {"wild": 0.0, "blend": 1.0}
BLEND_FILES = (TUNED,)  # written only by a fine-tuning run that ends blended (segapp.blend)
# Every file a run writes in --out; any of them already there means a run (or someone's file) is in the way.
RUN_FILES = ("last.pt", "model.safetensors", "config.json", "log.csv", "curve.png", "args.json", "metrics.json",
             "MODEL_CARD.md", "confusion.png", *BLEND_FILES)
RESUME_KEYS = ("model", "config", "optimizer", "scheduler", "epoch", "best", "history", "rng", "args")
# Arguments every resumable run has recorded since checkpoints carry args; a flag added later may be missing
# from an older run's args and gets its "before this flag existed" value where RUN_ARGS are restored.
REQUIRED_RUN_ARGS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "train_size", "val_size", "fixed_train",
                     "augment", "kaggle", "widths", "dice_weight", "amp")


def _whole(v, lo: int, hi: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _number(v, lo: float, strict: bool = False) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > lo if strict else v >= lo))


# ---- the training engine: `segapp train` and benchmarks/bench.py both train with exactly these ----------------------


def build_loss(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy + ``cfg.dice_weight`` x multiclass Dice on logits; pixels marked VOID (255) count in
    neither. Under torchrun with several processes: the same loss of the whole global batch
    (:func:`global_batch_loss`)."""
    if distributed.world() > 1:
        return global_batch_loss(cfg, distributed.all_reduce_sum)
    ce = torch.nn.CrossEntropyLoss(ignore_index=VOID)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=VOID)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ce(logits, y) + cfg.dice_weight * dice(logits, y)

    return loss


def global_batch_loss(cfg: TrainConfig, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
                      ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`build_loss`'s loss over a batch split across processes, from sums that ``reduce`` adds up over them
    (:func:`segapp.distributed.all_reduce_sum`, differentiable; the identity in one process, where it equals
    build_loss's to float rounding). Averaging each rank's own loss would not do: cross-entropy is a mean over the
    valid pixels of the whole batch (void pixels are not spread evenly), and smp's Dice is per class over the whole
    batch, not a mean over images. Every rank gets the global loss; its backward sends each rank world() x its
    images' share of the gradient, which DDP's averaging turns into the one-process gradient."""
    from torch.linalg import vector_norm

    eps = 1e-7  # smp.losses.DiceLoss's default (smooth 0)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = logits.shape[1]
        valid = y != VOID
        target = torch.where(valid, y, 0)
        logp = logits.log_softmax(1)
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1) * valid
        prob = (logp.exp() * valid.unsqueeze(1)).flatten(2)  # N, C, HW: as smp's DiceLoss (from logits) sees them
        onehot = (torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2) * valid.unsqueeze(1)).flatten(2)
        onehot = onehot.type_as(prob)
        sums = reduce(torch.cat([nll.sum().view(1), valid.sum().view(1).type_as(prob), prob.sum((0, 2)),
                                 onehot.sum((0, 2)), vector_norm(prob - onehot, ord=1, dim=(0, 2))]))
        ce = sums[0] / sums[1]
        p_sum, t_sum, difference = sums[2 : 2 + c], sums[2 + c : 2 + 2 * c], sums[2 + 2 * c :]
        inter = (p_sum + t_sum - difference) / 2  # smp's soft_tversky_score with alpha = beta = 0.5
        score = inter / (inter + 0.5 * (p_sum - inter) + 0.5 * (t_sum - inter)).clamp_min(eps)
        dice = ((1.0 - score) * (t_sum > 0)).mean()  # classes absent from the batch add nothing, as in smp
        return ce + cfg.dice_weight * dice

    return loss


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW at ``cfg.lr`` (resolved) with ``cfg.weight_decay``."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """One-cycle schedule peaking at ``cfg.lr`` over the whole run (``cfg.epochs`` x ``steps_per_epoch`` steps)."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)


def seed_epoch(train_set, seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seeds everything epoch ``epoch`` draws from (the dataset's fresh compositions, its augmentation and the
    shuffling order, returned as a generator) from (seed, epoch) alone, so a resumed run is the uninterrupted one.
    ``rank`` (torchrun): the augmentation stream of that process; rank 0's is the one-process stream."""
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    if getattr(train_set, "augment", None) is not None:
        train_set.augment.set_random_seed(seed * 100_003 + epoch + rank * 10**15)
    other = getattr(train_set, "other", None)  # --data with --mix-recipe: the recipe's share has its own augmentation
    if getattr(other, "augment", None) is not None:
        other.augment.set_random_seed(seed * 100_003 + epoch + rank * 10**15 + 7 * 10**13)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def epoch_loader(train_set, cfg: TrainConfig, epoch: int) -> DataLoader:
    """The seeded, shuffled batches of epoch ``epoch`` (full batches only). Under torchrun each process gets its
    ``batch_size / world`` share of every global batch of the same shuffle (see
    :func:`segapp.distributed.shard_indices`)."""
    generator = seed_epoch(train_set, cfg.seed, epoch, distributed.rank())
    if distributed.world() > 1:
        sampler = distributed.ShardSampler(len(train_set), generator, cfg.batch_size)
        return DataLoader(train_set, distributed.per_rank_batch(cfg.batch_size), sampler=sampler, drop_last=True,
                          generator=generator, num_workers=cfg.workers, persistent_workers=False)
    return DataLoader(train_set, cfg.batch_size, shuffle=True, drop_last=True, generator=generator,
                      num_workers=cfg.workers, persistent_workers=False)


def train_one_epoch(model: torch.nn.Module, loader, loss_fn, opt, sched, device: torch.device, amp: bool,
                    desc: str | None = None, teacher: Teacher | None = None,
                    memory_format: torch.memory_format = torch.channels_last) -> tuple[float, int]:
    """One pass over ``loader``: bfloat16 autocast where ``amp`` (see :func:`segapp.runtime.amp_enabled`), loss in
    float32, one optimiser and schedule step per batch. ``desc``: show a progress bar. ``teacher``: add its
    distillation loss (:mod:`segapp.distill`). ``memory_format``: of the inputs, as the model's
    (:func:`segapp.runtime.training_memory_format`). A loss that is not finite stops the run (TrainingDiverged)
    before the optimiser step, so no NaN reaches the weights, the checkpoint or the saved best weights.
    Returns (mean loss, images)."""
    model.train()
    loss_sum, n = 0.0, 0
    batches = progress_bar(loader, desc=desc, unit="batch", mininterval=2, file=sys.stderr) if desc else loader
    for x, y in batches:
        x, y = x.to(device).contiguous(memory_format=memory_format), y.to(device)
        with autocast(device, amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if teacher is not None:
            loss = loss + teacher.loss(x, logits)
        if not torch.isfinite(loss.detach()):
            raise TrainingDiverged(f"the training loss became {loss.item()} after {n} images of this epoch; the "
                                   "weights before this batch are kept; lower --lr, or try --amp off")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum, n = loss_sum + loss.item() * len(x), n + len(x)
        if desc:
            batches.set_postfix(loss=f"{loss_sum / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}", refresh=False)
    return loss_sum / max(n, 1), n


# evaluate(model, images, masks, batch_size, device, amp) -> (metrics, confusion, loss): segapp.evaluate's, imported
# above, the engine's validation step.


# ---- the `segapp train` job ---------------------------------------------------------------------------------------


def check_args(cfg: TrainConfig, names=None, source: str = "") -> None:
    """Refuses argument values that would crash the run or train nothing (``names``: check only these)."""
    checks = {
        "epochs": (_whole(cfg.epochs, 1), f"--epochs must be at least 1, got {cfg.epochs}"),
        "batch_size": (_whole(cfg.batch_size, 1), f"--batch-size must be at least 1, got {cfg.batch_size}"),
        "train_size": (_whole(cfg.train_size, 1), f"--train-size must be at least 1, got {cfg.train_size}"),
        "val_size": (_whole(cfg.val_size, 1), f"--val-size must be at least 1, got {cfg.val_size}"),
        "lr": (_number(cfg.lr, 0, strict=True), f"--lr must be a positive number, got {cfg.lr}"),
        "weight_decay": (_number(cfg.weight_decay, 0), f"--weight-decay must be 0 or more, got {cfg.weight_decay}"),
        "dice_weight": (_number(cfg.dice_weight, 0), f"--dice-weight must be 0 or more, got {cfg.dice_weight}"),
        "seed": (_whole(cfg.seed, 0, 2**32 - 1), f"--seed must be in 0..{2**32 - 1}, got {cfg.seed}"),
        "workers": (_whole(cfg.workers, 0), f"--workers must be 0 or more, got {cfg.workers}"),
        "wild": (_number(cfg.wild, 0) and cfg.wild <= 1,
                 f"--wild is a share of each epoch, 0 to 1; got {cfg.wild}"),
        "mix_recipe": (_number(cfg.mix_recipe, 0) and cfg.mix_recipe < 1,
                       f"--mix-recipe is a share of each epoch, 0 to below 1; got {cfg.mix_recipe}"),
        "blend": (cfg.blend == "auto" or (_number(cfg.blend, 0) and cfg.blend <= 1),
                  f"--blend is auto or a number from 0 (the parent) to 1 (the fine-tuned weights); got {cfg.blend}"),
        "forget_tolerance": (_number(cfg.forget_tolerance, 0),
                             f"--forget-tolerance must be 0 or more, got {cfg.forget_tolerance}"),
        "distill_weight": (_number(cfg.distill_weight, 0),
                           f"--distill-weight must be 0 or more, got {cfg.distill_weight}"),
        "distill_temperature": (_number(cfg.distill_temperature, 0, strict=True),
                                f"--distill-temperature must be a positive number, got {cfg.distill_temperature}"),
    }
    for name, (ok, message) in checks.items():
        if (names is None or name in names) and not ok:
            raise SegappError(message + source)
    if (names is None or "blend" in names) and cfg.blend != "auto" and not cfg.init:
        raise SegappError(f"--blend {cfg.blend} needs --init: it averages the parent's weights with the fine-tuned "
                          f"ones; leave out --blend when training from scratch{source}")
    if names is None or "widths" in names:
        try:
            NetConfig(widths=tuple(cfg.widths)).check_bounds()
        except (TypeError, ValueError) as e:
            raise SegappError(f"--widths: {e}{source}") from None
    if (names is None or "batch_size" in names) and not cfg.kaggle and cfg.batch_size > cfg.train_size:
        raise SegappError(f"--batch-size {cfg.batch_size} is larger than --train-size {cfg.train_size}: an epoch would "
                          f"hold no full batch and train nothing; lower --batch-size{source}")


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


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig field: ``train_size`` -> ``--train-size``."""
    return "--" + name.replace("_", "-")


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


def blends(cfg: TrainConfig) -> bool:
    """Whether the run ends by blending its weights with the parent's (:mod:`segapp.blend`): fine-tuning on a
    folder dataset with ``--blend auto``, or any fine-tuning with an explicit ``--blend`` below 1."""
    if not cfg.init:
        return False
    return cfg.data is not None if cfg.blend == "auto" else float(cfg.blend) < 1


def check_data(cfg: TrainConfig, train_set) -> None:
    """Refuses a training set that holds no full batch (a small Kaggle pair): nothing would be trained."""
    if len(train_set) < cfg.batch_size:
        raise SegappError(f"{len(train_set)} training images (after holding out the validation images) are fewer than "
                          f"--batch-size {cfg.batch_size}: no full batch, nothing would be trained; lower --batch-size "
                          "or give more images")




def build_data(cfg: TrainConfig) -> tuple:
    """Train dataset and (val images, val masks) for the run's config."""
    aug = train_augment() if cfg.augment else None
    if cfg.kaggle:
        images, masks = load_kaggle(Path(cfg.kaggle))
        order = np.random.default_rng(cfg.seed).permutation(len(images))
        n_val = max(1, len(images) // 10)
        val, tr = order[:n_val], order[n_val:]
        return SegmentationSet(images[tr], masks[tr], aug), (images[val], masks[val])
    if cfg.data:  # a folder dataset, optionally mixed with the M2NIST recipe (+ real-world images)
        from .folders import FolderSet, split_pairs, val_windows

        train_pairs, val_pairs = split_pairs(Path(cfg.data), cfg.seed)
        mix = cfg.mix_recipe
        other = WildM2NIST(cfg.train_size, cfg.seed, cfg.wild, aug) if mix > 0 else None
        return FolderSet(train_pairs, cfg.train_size, cfg.seed, other=other, share=1 - mix), val_windows(val_pairs)
    val = make_split("val", n=cfg.val_size)
    if cfg.fixed_train:
        return SegmentationSet(*make_split("train", n=cfg.train_size), aug), val
    if cfg.wild > 0:
        return WildM2NIST(cfg.train_size, cfg.seed, cfg.wild, aug), val
    return FreshM2NIST(cfg.train_size, cfg.seed, aug), val


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, written atomically (fsynced, then renamed into place)."""
    text = json.dumps(obj, indent=2) + "\n"
    write_atomic(path, lambda p: Path(p).write_text(text), fsync=True)


def write_csv(path: Path, rows: list[dict], fields=None) -> None:
    """``rows`` as CSV (columns ``fields``, default the first row's keys; other keys left out), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields or rows[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda p: Path(p).write_text(buf.getvalue()), fsync=True)


def write_log(out: Path, history: list[dict]) -> None:
    write_csv(out / "log.csv", history)
    plot_curve(history, out / "curve.png")


def plot_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train (CE + Dice)")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="val (CE)")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.set_yscale("log"), a1.legend(), a1.grid(alpha=0.3)
    a2.plot(ep, [h["val_miou_digits"] for h in history], "o-", label="val mIoU digits")
    a2.plot(ep, [h["val_miou"] for h in history], "o-", label="val mIoU 11 classes")
    a2.set_xlabel("epoch"), a2.set_ylabel("mean IoU"), a2.legend(), a2.grid(alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=100, format="png"), fsync=True)
    plt.close(fig)


@dataclass
class _Fit:
    """What the epoch loop works on, handed from one step of :func:`run` to the next: the net and where it runs,
    the data, the optimiser state (set by :func:`_restore`) and how far the run has got.

    Mutable on purpose: the loop appends to ``history`` and raises ``best`` epoch by epoch.
    """

    model: DilatedNet
    device: torch.device
    amp: bool
    memory_format: torch.memory_format
    teacher: Teacher | None
    train_set: torch.utils.data.Dataset
    val_images: np.ndarray
    val_masks: np.ndarray
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)
    best: float = -1.0  # best val mean IoU over digits so far
    start: int = 0  # the last finished epoch


def run(cfg: TrainConfig, argv: list[str] | None = None, given=(), progress: bool | None = None) -> dict:
    """Trains per ``cfg``; returns the final metrics. ``argv`` (the command's arguments after ``segapp``) goes
    into the model card; on ``cfg.resume`` the run's own config comes from its checkpoint (or args.json), and a field
    in ``given`` (those set on the command line: field -> flag) that differs from it is refused; a complete run is
    left as it is. ``progress``: progress bars on stderr (None: when stderr is a terminal).

    The steps, in order: start or resume -> build the model -> load the teacher -> data -> restore -> fit -> finish.
    Each step that can change the config returns the new one, so what ``args.json`` records is the config after
    all of them.
    """
    out = Path(cfg.out)
    cfg = cfg.resolved()
    progress = sys.stderr.isatty() if progress is None else progress
    check_args(cfg, names=("workers",) if cfg.resume else None)  # nothing is written before these checks
    device = distributed.init(pick_device(cfg.device))  # under torchrun: joins the run's processes (else a no-op)
    progress = progress and distributed.is_main()  # rank 0 alone prints, validates and writes --out
    cfg, ckpt, complete = _start_or_resume(cfg, out, given)
    if complete:
        return distributed.on_main(lambda: json.loads((out / "metrics.json").read_text()))
    _clean_and_seed(cfg, out)
    cfg, model, amp, memory_format = _build_model(cfg, ckpt, given, device)
    cfg, teacher = _load_teacher(cfg, ckpt, device, amp)
    train_set, (val_images, val_masks) = build_data(cfg)
    check_data(cfg, train_set)
    distributed.per_rank_batch(cfg.batch_size)  # under torchrun: refuses a global batch that does not split evenly
    fit = _Fit(model, device, amp, memory_format, teacher, train_set, val_images, val_masks)
    _restore(fit, cfg, ckpt, out)
    args_dict = asdict(cfg)
    _announce(fit, cfg, out, args_dict)
    _fit(fit, cfg, out, args_dict, progress)
    return _blend_and_finish(fit, cfg, out, argv, progress)


def _start_or_resume(cfg: TrainConfig, out: Path, given) -> tuple[TrainConfig, dict | None, bool]:
    """Checks ``out`` and, on ``--resume``, swaps in the run's own config (from its checkpoint or args.json).

    Returns (config, checkpoint or None, whether the run is already complete). A run-defining flag in ``given``
    that differs from the recorded run is refused here, before anything is written.
    """
    distributed.on_main(check_out, out, cfg.resume)
    if not cfg.resume:
        return cfg, None, False
    ckpt, run_args = distributed.on_main(load_resumable, out)  # rank 0's last.pt, sent to every rank
    asked, cfg = cfg, TrainConfig.from_dict(run_args, **{k: getattr(cfg, k) for k in HOW_ARGS})
    check_args(cfg, names=RUN_ARGS, source=f" (in {out / 'last.pt'})")
    complete = distributed.on_main(run_complete, out, cfg, ckpt)
    check_resume_flags(asked, cfg, given if isinstance(given, dict) else {k: flag(k) for k in given}, out, complete)
    if complete and distributed.is_main():
        print(f"run complete ({cfg.epochs} epochs); nothing to do; to train longer start a new run with "
              f"--init {out}", file=sys.stderr)
    return cfg, ckpt, complete


def _clean_and_seed(cfg: TrainConfig, out: Path) -> None:
    """Removes a killed run's temp files from ``out`` (never the user's Kaggle pair) and seeds torch and numpy, so
    the net's initial weights depend on ``cfg.seed`` alone."""
    kaggle_files = [Path(cfg.kaggle) / n for n in ("combined.npy", "segmented.npy")] if cfg.kaggle else []
    if distributed.is_main():
        sweep_temps([out], keep={fid for p in kaggle_files if (fid := file_id(p))})  # a killed run's temp files only
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)


def _build_model(cfg: TrainConfig, ckpt: dict | None, given, device: torch.device
                 ) -> tuple[TrainConfig, DilatedNet, bool, torch.memory_format]:
    """The net to train, on ``device`` in its training memory format.

    Fine-tuning (``cfg.init``, no checkpoint yet) starts from the parent's weights and architecture, trimmed to
    ``--widths`` only when those were asked for; otherwise a fresh net (a resumed run's weights are put back by
    :func:`_restore`). Returns (config with the widths and parent fingerprint used, net, bf16 autocast on,
    memory format).
    """
    if cfg.init and ckpt is None:  # fine-tuning: start from trained weights (their architecture)
        parent = Path(cfg.init)
        model = load_pretrained(parent)
        if tuple(cfg.widths) != tuple(model.config.widths) and ("widths" in given or cfg.resume):
            try:  # a leaner net started from its parent's strongest channels (segapp.distill.shrink)
                model = shrink(model, tuple(cfg.widths))
            except ValueError as e:
                raise SegappError(str(e)) from None
        cfg = replace(cfg, widths=tuple(model.config.widths), init_sha256=weights_fingerprint(parent))
    else:
        model = DilatedNet(NetConfig(widths=tuple(cfg.widths)))
    amp = amp_enabled(cfg.amp, device)
    memory_format = training_memory_format(cfg.widths, amp, device)
    return cfg, model.to(device).to(memory_format=memory_format), amp, memory_format


def _load_teacher(cfg: TrainConfig, ckpt: dict | None, device: torch.device, amp: bool
                  ) -> tuple[TrainConfig, Teacher | None]:
    """The distillation teacher of ``cfg.teacher`` (None without one), and the config with its fingerprint.

    A resumed run refuses a teacher whose weights changed since the run began: the run would no longer be the
    one that was started.
    """
    if not cfg.teacher:
        return cfg, None
    teacher = Teacher.load(cfg.teacher, device, amp, cfg.distill_weight, cfg.distill_temperature)
    fingerprint_now = weights_fingerprint(Path(cfg.teacher))
    if ckpt is not None and cfg.teacher_sha256 and fingerprint_now != cfg.teacher_sha256:
        raise SegappError(f"--resume: the teacher {cfg.teacher} has changed since the run began (fingerprint "
                          f"{fingerprint_now}, was {cfg.teacher_sha256}); the run cannot go on as it was started; "
                          "start a new run in another --out")
    return replace(cfg, teacher_sha256=fingerprint_now), teacher


def _restore(fit: _Fit, cfg: TrainConfig, ckpt: dict | None, out: Path) -> None:
    """Builds the optimiser, schedule and loss into ``fit``; with a checkpoint, puts back its weights, optimiser and
    schedule state, torch RNG, history and epoch, so the resumed run continues the uninterrupted one."""
    fit.opt = build_optimizer(fit.model, cfg)
    fit.sched = build_scheduler(fit.opt, cfg, len(fit.train_set) // cfg.batch_size)
    fit.loss_fn = build_loss(cfg)
    if ckpt is None:
        return
    fit.model.load_state_dict(ckpt["model"])
    fit.opt.load_state_dict(ckpt["optimizer"])
    fit.sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    fit.history, fit.best, fit.start = ckpt["history"], ckpt["best"], ckpt["epoch"]
    if distributed.is_main():
        print(f"resuming {out / 'last.pt'} after epoch {fit.start}/{cfg.epochs}", file=sys.stderr)


def _announce(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict) -> None:
    """Rank 0: records the resolved config in args.json (what ``--resume`` rebuilds the run from) and prints one
    line describing the model, device and data."""
    if not distributed.is_main():
        return
    write_json(out / "args.json", args_dict)
    ddp = (f", DDP over {distributed.world()} processes ({cfg.batch_size // distributed.world()} images each per "
           "batch)" if distributed.world() > 1 else "")
    print(f"model: {fit.model.num_params():,} params, receptive field {fit.model.receptive_field()} px, "
          f"device {fit.device} {'bf16' if fit.amp else 'fp32'}, "
          f"{len(fit.train_set)} train / {len(fit.val_images)} val images per epoch{ddp}", file=sys.stderr)


def _fit(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict, progress: bool) -> None:
    """Trains the epochs after ``fit.start``. Every rank trains; rank 0 alone validates and writes (the others
    wait at a barrier), since DDP keeps every rank's weights equal to its own."""
    net = distributed.wrap(fit.model, fit.device)  # DDP under torchrun; fit.model stays the net to validate and save
    for epoch in range(fit.start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, n = train_one_epoch(net, epoch_loader(fit.train_set, cfg, epoch), fit.loss_fn, fit.opt, fit.sched,
                                        fit.device, fit.amp, desc=f"epoch {epoch}/{cfg.epochs}" if progress else None,
                                        teacher=fit.teacher, memory_format=fit.memory_format)
        train_seconds = time.perf_counter() - t0
        if distributed.is_main():
            _end_epoch(fit, cfg, out, args_dict, progress, epoch, t0, train_loss,
                       n * distributed.world() / train_seconds)  # all ranks' images
        distributed.barrier()  # the other ranks wait here for rank 0's files


def _end_epoch(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict, progress: bool, epoch: int, t0: float,
               train_loss: float, images_per_s: float) -> None:
    """Rank 0 after each epoch: validates, saves the weights when they are the best so far, then writes last.pt and
    the log (each atomically, so a kill leaves the previous epoch's files whole) and prints one line."""
    metrics, _, val_loss = evaluate(fit.model, fit.val_images, fit.val_masks, 128, fit.device, fit.amp,
                                    desc=f"val {epoch}/{cfg.epochs}" if progress else None)
    row = {
        "epoch": epoch, "lr": fit.sched.get_last_lr()[0], "train_loss": train_loss, "val_loss": val_loss,
        "val_miou": metrics["miou"], "val_miou_digits": metrics["miou_digits"],
        "val_pixel_accuracy": metrics["pixel_accuracy"], "seconds": time.perf_counter() - t0,
        "train_images_per_s": images_per_s,
    }
    fit.history.append(row)
    improved = metrics["miou_digits"] > fit.best
    if improved:
        fit.best = metrics["miou_digits"]
        save_pretrained(fit.model, out, {"epoch": epoch, "val_miou_digits": fit.best})
    state = {
        "config": fit.model.config.to_dict(), "model": fit.model.state_dict(), "optimizer": fit.opt.state_dict(),
        "scheduler": fit.sched.state_dict(), "epoch": epoch, "best": fit.best, "history": fit.history,
        "rng": {"torch": torch.get_rng_state()}, "args": args_dict,
    }
    write_atomic(out / "last.pt", lambda p, state=state: torch.save(state, p), fsync=True)
    write_log(out, fit.history)
    print(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f}  val mIoU digits "
          f"{row['val_miou_digits']:.4f}  11-class {row['val_miou']:.4f}  {row['seconds']:.0f}s"
          f"{'  (best, saved)' if improved else ''}", file=sys.stderr)


def _blend_and_finish(fit: _Fit, cfg: TrainConfig, out: Path, argv: list[str] | None, progress: bool) -> dict:
    """Ends the run: a fine-tuning run that :func:`blends` mixes its weights with the parent's (rank 0), then rank 0
    scores the result on the test split (:func:`finish`); the metrics go to every rank."""
    blended = None
    if blends(cfg):  # keep what the parent knew: blend with its weights (segapp.blend), rank 0 alone
        keep = make_split("val", n=cfg.val_size)  # the recipe's val split: what the parent knew; never test
        blended = distributed.on_main(blend_run, out, cfg.init, cfg.blend, cfg.forget_tolerance, keep,
                                      (fit.val_images, fit.val_masks), fit.device, fit.amp)
    metrics = distributed.on_main(finish, cfg, out, fit.history, fit.device, argv, progress, blended)  # rank 0 tests
    distributed.cleanup()
    return metrics


def finish(cfg: TrainConfig, out: Path, history: list[dict], device: torch.device, argv: list[str] | None = None,
           progress: bool = False, blended: dict | None = None) -> dict:
    """Scores the best weights (blended with the parent's when ``blended``, see :mod:`segapp.blend`) on the test
    split and writes metrics.json and the model card."""
    from .metrics import plot_confusion
    model = load_pretrained(out).to(device).to(memory_format=torch.channels_last)
    if cfg.kaggle:  # a user's own pair has no separate test split: report the held-out 10% (val)
        _, (images, masks) = build_data(cfg)
        data_name = f"kaggle pair {cfg.kaggle} (held-out 10%)"
    elif cfg.data:  # a folder dataset: its validation windows (`evaluate --data` scores whole images)
        _, (images, masks) = build_data(cfg)
        data_name = f"folder dataset {cfg.data} (validation windows)"
    else:
        images, masks = make_split("test")
        data_name = "M2NIST-recipe test split (MNIST test digits)"
    metrics, cm, _ = evaluate(model, images, masks, 128, device, desc="test" if progress else None)
    wall = sum(h["seconds"] for h in history)
    best = max(history, key=lambda h: h["val_miou_digits"])
    metrics.update(
        data=data_name, n_images=len(images), data_fingerprint=fingerprint(images, masks),
        params=model.num_params(), receptive_field=model.receptive_field(), best_epoch=best["epoch"],
        epochs=len(history), train_wall_seconds=round(wall, 1), machine=machine(), **(blended or {}),
    )
    write_json(out / "metrics.json", metrics)
    plot_confusion(cm.matrix, out / "confusion.png", "Test confusion (row-normalised)")
    write_card(cfg, out, metrics, argv)
    print(f"test ({data_name}): mIoU digits {metrics['miou_digits']:.4f}, 11-class {metrics['miou']:.4f}, "
          f"pixel accuracy {metrics['pixel_accuracy']:.4f}; wrote {out}", file=sys.stderr)
    return metrics


def write_card(cfg: TrainConfig, out: Path, m: dict, argv: list[str] | None = None) -> None:
    from .classes import CLASS_NAMES

    init = cfg.init
    parent = f"`{init}` (weights fingerprint {cfg.init_sha256}), fine-tuned" if init else "random initialisation"
    try:
        parent_widths = json.loads((Path(init) / "config.json").read_text())["widths"] if init else None
    except (OSError, ValueError, KeyError, TypeError):
        parent_widths = None
    if parent_widths is not None and list(parent_widths) != list(cfg.widths):
        parent += f" after trimming its widths {list(parent_widths)} to its strongest channels (segapp.distill.shrink)"
    if cfg.teacher:
        parent += (f"; distilled from `{cfg.teacher}` (weights fingerprint {cfg.teacher_sha256}; weight "
                   f"{cfg.distill_weight:g}, temperature {cfg.distill_temperature:g}; see segapp/distill.py)")
    if "blend" in m:
        parent += (f"; final weights {1 - m['blend']:g} x parent + {m['blend']:g} x fine-tuned (`--blend "
                   f"{m['blend_mode']}`, see segapp/blend.py; the fine-tuned alone: `{TUNED}`)")
    command = "segapp " + " ".join(shlex.quote(s) for s in (sys.argv[1:] if argv is None else argv))
    rows = "\n".join(f"| {n} | {iou:.4f} |" for n, iou in zip(CLASS_NAMES, m["per_class_iou"]))
    card = f"""# segapp model card

Decoder-free segmentation net: 3x3 convolutions with dilations {list(NetConfig().dilations)} and
widths {list(cfg.widths)}, each + BatchNorm + ReLU at full resolution, then a 1x1 head to 11 classes
(digits 0-9, background 10). No pooling, stride, upsampling or decoder.

| | |
|---|---|
| parameters | {m['params']:,} |
| receptive field | {m['receptive_field']} x {m['receptive_field']} px |
| produced by | `{command}` |
| started from | {parent} |
| epochs | {m['epochs']} (best val epoch {m['best_epoch']}) |
| training wall time | {m['train_wall_seconds'] / 60:.1f} min |
| machine | {m['machine']} |
| evaluated on | {m['data']}, {m['n_images']} images (fingerprint {m['data_fingerprint']}) |
| **test mean IoU, digits** | **{m['miou_digits']:.4f}** |
| test mean IoU, 11 classes | {m['miou']:.4f} |
| test mean Dice, 11 classes | {m['mdice']:.4f} |
| test pixel accuracy | {m['pixel_accuracy']:.4f} |

Per-class test IoU:

| class | IoU |
|---|---|
{rows}

Files: `config.json` + `model.safetensors` (the weights every segapp command loads by default),
`metrics.json` (these numbers), `log.csv` and `curve.png` (every epoch), `confusion.png`,
`args.json` (resolved arguments). Re-check with `segapp evaluate --weights {out}`.

Training data: the M2NIST recipe rebuilt from the original MNIST files (CC BY-SA 3.0, LeCun,
Cortes, Burges), see `data/mnist/SOURCE.md`.
"""
    write_atomic(out / "MODEL_CARD.md", lambda p: Path(p).write_text(card), fsync=True)

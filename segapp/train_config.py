"""What a training run is: :class:`TrainConfig`, its checks, and the data it trains and validates on.

A run is described by one frozen :class:`TrainConfig` (the CLI maps its flags onto it; ``asdict(cfg)`` is
what ``args.json`` and ``last.pt`` record, and what ``--resume`` rebuilds the run from). Kept apart from the
job that carries the run out (:mod:`segapp.train`) so the definition of a run, its defaults for runs recorded
before a flag existed, and the refusals of values that could only fail can be read in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from .classes import SegappError
from .datasets import FreshM2NIST, SegmentationSet, WildM2NIST, train_augment
from .kaggle import load_kaggle
from .m2nist import make_split
from .model import NetConfig

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
    ruled: float = 0.3  # share of the wild images' photographed pages that are ruled or squared paper (synth._rules)
    letters: float = 0.0  # share of the wild images' glyphs that are letters or signs, background (segapp/glyphs.py)
    # model and optimisation
    widths: tuple[int, ...] = (48,) * 7  # channels per layer (dilations 1-2-4-8-4-2-1)
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None  # peak learning rate of the one-cycle schedule
    init: str | None = None  # fine-tune from these trained weights (their widths are used)
    init_sha256: str | None = None  # fingerprint of init's weights, filled in by the run
    blend: str | float = "auto"  # fine-tuning: final = (1-B) parent + B fine-tuned (segapp.blend); auto picks B
    forget_tolerance: float = 0.002  # blend auto: largest allowed drop of M2NIST val mIoU over digits vs the parent
    blend_with: str | None = None  # blend with these weights instead of init's (an ancestor of init; same widths)
    blend_with_sha256: str | None = None  # fingerprint of blend_with's weights, filled in by the run
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


def _whole(v, lo: int, hi: int | None = None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _number(v, lo: float, strict: bool = False) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > lo if strict else v >= lo))


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
        "ruled": (_number(cfg.ruled, 0) and cfg.ruled <= 1,
                  f"--ruled is a share of the photographed pages, 0 to 1; got {cfg.ruled}"),
        "letters": (_number(cfg.letters, 0) and cfg.letters < 1,
                    f"--letters is a share of the glyphs placed, 0 to below 1; got {cfg.letters}"),
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
    if (names is None or "blend_with" in names) and cfg.blend_with and not (cfg.init and blends(cfg)):
        raise SegappError(f"--blend-with {cfg.blend_with} needs --init and a --blend below 1: it names the net the "
                          f"fine-tuned weights are averaged with; add --blend B (0 to below 1) or leave it out{source}")
    if names is None or "widths" in names:
        try:
            NetConfig(widths=tuple(cfg.widths)).check_bounds()
        except (TypeError, ValueError) as e:
            raise SegappError(f"--widths: {e}{source}") from None
    if (names is None or "batch_size" in names) and not cfg.kaggle and cfg.batch_size > cfg.train_size:
        raise SegappError(f"--batch-size {cfg.batch_size} is larger than --train-size {cfg.train_size}: an epoch would "
                          f"hold no full batch and train nothing; lower --batch-size{source}")


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig field: ``train_size`` -> ``--train-size``."""
    return "--" + name.replace("_", "-")


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
        other = (WildM2NIST(cfg.train_size, cfg.seed, cfg.wild, aug, ruled=cfg.ruled, letters=cfg.letters)
                 if mix > 0 else None)
        return FolderSet(train_pairs, cfg.train_size, cfg.seed, other=other, share=1 - mix), val_windows(val_pairs)
    val = make_split("val", n=cfg.val_size)
    if cfg.fixed_train:
        return SegmentationSet(*make_split("train", n=cfg.train_size), aug), val
    if cfg.wild > 0:
        return WildM2NIST(cfg.train_size, cfg.seed, cfg.wild, aug, ruled=cfg.ruled, letters=cfg.letters), val
    return FreshM2NIST(cfg.train_size, cfg.seed, aug), val

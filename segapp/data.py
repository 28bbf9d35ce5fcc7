"""`segapp data`: the M2NIST-recipe splits written to a folder, as ``.npz`` files and optionally in the Kaggle layout.

The job alone (its checked config and the build): the recipe it writes is :mod:`segapp.m2nist`, the Kaggle files
:mod:`segapp.kaggle`, and the torch datasets training reads :mod:`segapp.datasets`, so each can be read by itself.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classes import RecordedConfig, SegappError
from .kaggle import save_kaggle
from .m2nist import DEFAULT_SIZES, make_split
from .safeio import write_atomic


class DataArgumentError(SegappError, ValueError):
    """A `segapp data` argument that could only fail the build."""


@dataclass(frozen=True)
class DataConfig(RecordedConfig):
    """Every argument of `segapp data` (see its ``--help``), checked on creation.

    ``recorded``: what the folder's args.json records; the CLI passes the command's parsed arguments, None records
    this config's own fields.
    """

    out: Path = Path("data/m2nist")
    train_size: int = DEFAULT_SIZES["train"]
    val_size: int = DEFAULT_SIZES["val"]
    test_size: int = DEFAULT_SIZES["test"]
    width: int = 84  # canvas width; wider canvases hold more digits
    kaggle_layout: bool = False  # also write <split>/combined.npy + segmented.npy
    recorded: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("train_size", "val_size", "test_size"):
            if getattr(self, name) < 1:
                raise DataArgumentError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 28 <= self.width <= 4096:
            raise DataArgumentError(f"--width must be 28..4096 (a digit is 28 pixels wide), got {self.width}")
        self.freeze_record()


def build(cfg: DataConfig) -> None:
    """`segapp data`: the three splits as ``<split>.npz`` (and the Kaggle layout when asked) and args.json in
    ``cfg.out``, with one line per split on stdout."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", cfg.train_size), ("val", cfg.val_size), ("test", cfg.test_size)):
        images, masks = make_split(split, n=n, width=cfg.width)
        buf = io.BytesIO()
        np.savez_compressed(buf, images=images, masks=masks)
        write_atomic(cfg.out / f"{split}.npz", buf.getvalue())
        if cfg.kaggle_layout:
            save_kaggle(cfg.out / split, images, masks)
        digits = (masks < 10).mean()
        print(f"{split}: {len(images)} images {images.shape[1]}x{images.shape[2]}, "
              f"{digits:.1%} digit pixels -> {cfg.out / f'{split}.npz'}")
    write_atomic(cfg.out / "args.json", (json.dumps(cfg.record(), default=str, indent=2) + "\n").encode())



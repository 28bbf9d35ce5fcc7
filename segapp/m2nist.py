"""MNIST IDX files -> the M2NIST recipe -> deterministic splits.

The one definition of the data every segapp net is trained and scored on, kept apart from the torch datasets
(:mod:`segapp.datasets`), the Kaggle files (:mod:`segapp.kaggle`) and the `segapp data` job (:mod:`segapp.data`)
so the recipe can be read on its own.

M2NIST recipe (Kaggle "M2NIST"): a 64x84 black canvas; for slot ``i`` a 28x28 MNIST digit is
pasted untransformed at ``x = i*28 + U[0,9]`` and a uniformly random ``y``; a digit that would
overflow the canvas width is dropped; the canvas is the pixel-wise max of the digits. A pixel
belongs to a digit where that digit's MNIST intensity is > 0; where two digits overlap the
brighter one wins (ties go to the earlier, left-hand digit). Everything else is background (10).

Splits never share a digit image: ``train`` and ``val`` draw from disjoint pools of the MNIST
training set, ``test`` from the MNIST test set.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from .classes import BACKGROUND, SegappError
from .paths import MNIST_DIR  # the bundled MNIST files, found in a checkout and in a wheel

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
VAL_POOL = 6000  # MNIST-train digits reserved for the val split (the last ones after a fixed shuffle)
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 5000, "val": 1000, "test": 1000}


class DataError(SegappError, ValueError):
    """A data file is missing or malformed; the message names the file and how to fix it."""


def read_idx(path: Path) -> np.ndarray:
    """Reads one (optionally gzipped) IDX file of unsigned bytes into an array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: MNIST file not found; copy the four original MNIST .gz files into {path.parent}"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e}); replace it with the original file") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file (header says {dims}, got {len(raw) - offset} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(part: str, root: Path = MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Returns MNIST ``part`` ("train" or "test") as images (N, 28, 28) uint8 and labels (N,)."""
    img_name, lbl_name = MNIST_FILES[part]
    images, labels = read_idx(Path(root) / img_name), read_idx(Path(root) / lbl_name)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise DataError(f"{root}: MNIST {part} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def digit_pool(split: str, root: Path = MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST digits a split may use; train and val pools are disjoint by construction."""
    if split == "test":
        return load_mnist("test", root)
    images, labels = load_mnist("train", root)
    order = np.random.default_rng(12345).permutation(len(images))
    idx = order[-VAL_POOL:] if split == "val" else order[:-VAL_POOL]
    return images[idx], labels[idx]


def compose(
    digits: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, height: int = 64, width: int = 84
) -> tuple[np.ndarray, np.ndarray]:
    """Builds ``n`` images with the M2NIST recipe from a digit pool.

    Wider canvases get more slots (``width // 28``), which is how the 64x224 "long number"
    images used to test generalisation are made.

    Returns:
        Images (n, H, W) uint8 and class maps (n, H, W) uint8 (0-9 digits, 10 background).
    """
    images = np.zeros((n, height, width), np.uint8)
    masks = np.full((n, height, width), BACKGROUND, np.uint8)
    for k in range(n):
        for x, y, j in slot_draws(rng, len(digits), height, width):
            place(images[k], masks[k], digits[j], int(labels[j]), x, y)
    return images, masks


def slot_draws(rng: np.random.Generator, pool_size: int, height: int = 64,
               width: int = 84) -> list[tuple[int, int, int]]:
    """The recipe's random draws for one canvas: (x, y, pool index) of each digit placed, in drawing order. A slot
    whose digit would cross the right edge is drawn and dropped, so the random stream stays aligned."""
    spots = []
    for i in range(width // 28):
        x, y = i * 28 + int(rng.integers(0, 10)), int(rng.integers(0, height - 28 + 1))
        j = int(rng.integers(0, pool_size))
        if x + 28 <= width:
            spots.append((x, y, j))
    return spots


def place(canvas: np.ndarray, classes: np.ndarray, digit: np.ndarray, label: int, x: int, y: int) -> np.ndarray:
    """Draws a 28x28 ``digit`` onto ``canvas`` at (x, y), in place, and labels the pixels it wins in ``classes``: those
    where it is strictly brighter than what is there (ties keep the earlier digit). Returns those (28, 28) bool."""
    win_c = canvas[y : y + 28, x : x + 28]
    wins = (digit > 0) & (digit > win_c)
    classes[y : y + 28, x : x + 28][wins] = label
    np.maximum(win_c, digit, out=win_c)
    return wins


def make_split(
    split: str, n: int | None = None, seed: int | None = None, width: int = 84, root: Path = MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministically builds one M2NIST split (same arguments -> same bytes)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEEDS)}")
    digits, labels = digit_pool(split, root)
    rng = np.random.default_rng(SPLIT_SEEDS[split] if seed is None else seed)
    return compose(digits, labels, DEFAULT_SIZES[split] if n is None else n, rng, width=width)


def fingerprint(images: np.ndarray, masks: np.ndarray) -> str:
    """Short content hash, recorded with results so a user can tell two datasets apart."""
    return hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()[:12]

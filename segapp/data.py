"""Files -> arrays -> tensors: MNIST IDX reading, the M2NIST recipe, splits, Kaggle pairs, datasets.

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
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import BACKGROUND, NUM_CLASSES, RecordedConfig, SegappError
from .paths import MNIST_DIR  # the bundled MNIST files, found in a checkout and in a wheel
from .safeio import write_atomic

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
    slots = width // 28
    images = np.zeros((n, height, width), np.uint8)
    masks = np.full((n, height, width), BACKGROUND, np.uint8)
    for k in range(n):
        canvas, owner = images[k], masks[k]
        for i in range(slots):
            x, y = i * 28 + int(rng.integers(0, 10)), int(rng.integers(0, height - 28 + 1))
            j = int(rng.integers(0, len(digits)))  # drawn even when dropped, so streams stay aligned
            if x + 28 > width:
                continue
            d = digits[j]
            win_c, win_o = canvas[y : y + 28, x : x + 28], owner[y : y + 28, x : x + 28]
            wins = (d > 0) & (d > win_c)  # strictly brighter: ties keep the earlier digit
            win_o[wins] = labels[j]
            np.maximum(win_c, d, out=win_c)
    return images, masks


def make_split(
    split: str, n: int | None = None, seed: int | None = None, width: int = 84, root: Path = MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministically builds one M2NIST split (same arguments -> same bytes)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEEDS)}")
    digits, labels = digit_pool(split, root)
    rng = np.random.default_rng(SPLIT_SEEDS[split] if seed is None else seed)
    return compose(digits, labels, DEFAULT_SIZES[split] if n is None else n, rng, width=width)


def load_kaggle(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Loads a Kaggle M2NIST pair ``combined.npy`` (N,H,W) + ``segmented.npy`` (N,H,W,11).

    Refused with a :class:`DataError` naming the file: anything but two readable ``.npy`` arrays of numbers with
    matching shapes, no images, images with NaN/infinite values or outside 0-255 (0-1 for floats), and masks with
    pixels that have no single class (all 11 channels zero, or a tie for the largest).

    Returns:
        Images (N, H, W) uint8 and class maps (N, H, W) uint8.
    """
    folder = Path(folder)
    img_path, seg_path = folder / "combined.npy", folder / "segmented.npy"
    for p in (img_path, seg_path):
        if not p.exists():
            raise DataError(f"{p}: not found; point --kaggle at the folder holding combined.npy and segmented.npy")
        if not p.is_file():
            raise DataError(f"{p}: not a regular file (a folder, pipe or device); not read")
    arrays = []
    for p in (img_path, seg_path):
        try:
            arrays.append(np.load(p, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{p}: cannot read it as a .npy array ({' '.join(str(e).split())[:200]})") from None
    images, seg = arrays
    for p, a in ((img_path, images), (seg_path, seg)):
        if not isinstance(a, np.ndarray) or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
                or np.issubdtype(a.dtype, np.complexfloating):
            raise DataError(f"{p}: holds {getattr(a, 'dtype', type(a).__name__)} values, not numbers")
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected shape (N, H, W), got {images.shape}")
    if seg.shape != (*images.shape, NUM_CLASSES):
        raise DataError(
            f"{seg_path}: expected shape {(*images.shape, NUM_CLASSES)} to match {img_path.name}, got {seg.shape}"
        )
    if images.size == 0:
        raise DataError(f"{img_path}: holds no images (shape {images.shape})")
    chunks = range(0, len(images), 256)
    if images.dtype == bool:
        images = np.asarray(images, np.uint8) * 255
    elif images.dtype != np.uint8:
        lo, hi, finite = np.inf, -np.inf, True
        for i in chunks:
            part = np.asarray(images[i : i + 256], np.float64)
            finite &= bool(np.isfinite(part).all())
            lo, hi = min(lo, float(np.nanmin(part))), max(hi, float(np.nanmax(part)))
        if not finite:
            raise DataError(f"{img_path}: holds NaN or infinite pixel values; fix or drop those images")
        if lo < 0 or hi > 255:
            raise DataError(f"{img_path}: pixel values run from {lo:g} to {hi:g}; expected 0-255 (or 0-1 for floats)")
        scale = 255.0 if np.issubdtype(images.dtype, np.floating) and hi <= 1.0 else 1.0  # some copies store [0, 1]
        images = np.concatenate([np.clip(np.asarray(images[i : i + 256], np.float32) * scale, 0, 255).round()
                                 .astype(np.uint8) for i in chunks])
    masks = np.empty(images.shape, np.uint8)
    for i in chunks:
        part = np.asarray(seg[i : i + 256], np.float32 if seg.dtype.itemsize <= 4 else np.float64)
        if not np.isfinite(part).all():
            raise DataError(f"{seg_path}: holds NaN or infinite values; expected one-hot class channels")
        top = part.max(-1)
        unclear = (top <= 0) | ((part == top[..., None]).sum(-1) > 1)
        if unclear.any():
            n = int(unclear.sum())
            raise DataError(f"{seg_path}: {n:,} pixels of images {i}-{min(i + 256, len(images)) - 1} have no single "
                            "class (all 11 channels zero, or a tie); expected one-hot class channels")
        masks[i : i + 256] = part.argmax(-1)
    return np.asarray(images), masks


def save_kaggle(folder: Path, images: np.ndarray, masks: np.ndarray) -> None:
    """Writes images and class maps in the Kaggle M2NIST layout (one-hot ``segmented.npy``), each file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "combined.npy", npy_bytes(images))
    write_atomic(folder / "segmented.npy", npy_bytes(np.eye(NUM_CLASSES, dtype=np.uint8)[masks]))


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (what ``np.save`` writes)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


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


def fingerprint(images: np.ndarray, masks: np.ndarray) -> str:
    """Short content hash, recorded with results so a user can tell two datasets apart."""
    return hashlib.sha256(images.tobytes() + masks.tobytes()).hexdigest()[:12]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (H, W) -> float32 (N, 1, H, W) in [0, 1], the model's input format.

    Float arrays are taken as already scaled to [0, 1] (augmented training images).
    """
    t = torch.from_numpy(np.ascontiguousarray(images)).float()
    if images.dtype == np.uint8:
        t = t.div_(255.0)
    return t.reshape(-1, 1, *t.shape[-2:])


class LabelConsistentAugment:
    """Albumentations jitter that keeps M2NIST's label rule: a pixel is a digit exactly where ink > 0.

    Only transforms that keep each digit's identity are used (no flips, rotations within +-10
    degrees). Images are augmented in float so gamma and intensity changes never turn a faint
    stroke pixel into 0. Interpolation can still move ink across mask boundaries, so afterwards
    lit pixels labelled background take the label of the neighbouring digit and unlit pixels
    become background; a label rule the net can learn exactly, as on clean M2NIST images.
    """

    def __init__(self):
        import albumentations as A
        import cv2

        self.compose = A.Compose(
            [
                A.Affine(
                    scale=(0.85, 1.15), translate_percent=(-0.04, 0.04), rotate=(-10, 10), shear=(-6, 6),
                    interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=BACKGROUND, p=0.3,
                ),
                A.RandomGamma(gamma_limit=(60, 160), p=0.3),
                A.MultiplicativeNoise(multiplier=(0.6, 1.0), per_channel=False, elementwise=False, p=0.3),
            ]
        )

    def set_random_seed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        import cv2

        out = self.compose(image=image.astype(np.float32) / 255.0, mask=mask)
        img, lbl = np.clip(out["image"], 0.0, 1.0), out["mask"].copy()
        img[img < 0.5 / 255] = 0.0  # below what an 8-bit input can express
        lbl[img == 0] = BACKGROUND
        orphan = (img > 0) & (lbl == BACKGROUND)
        for _ in range(2):  # give orphan ink the label of an adjacent digit pixel
            if not orphan.any():
                break
            near = cv2.erode(lbl, np.ones((3, 3), np.uint8))  # min over 3x3: any digit (0-9) beats background (10)
            lbl[orphan] = near[orphan]
            orphan = (img > 0) & (lbl == BACKGROUND)
        img[orphan] = 0.0
        return {"image": img, "mask": lbl}


def train_augment() -> LabelConsistentAugment:
    """The training augmentation (see :class:`LabelConsistentAugment`)."""
    return LabelConsistentAugment()


@dataclass
class SegmentationSet(Dataset):
    """In-memory images + class maps, optionally augmented; yields (1,H,W) float and (H,W) long."""

    images: np.ndarray
    masks: np.ndarray
    augment: object | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[i], self.masks[i]
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return to_tensor(image)[0], torch.from_numpy(np.ascontiguousarray(mask)).long()


class FreshM2NIST(Dataset):
    """Training set recomposed every epoch from the train digit pool: new layouts, same recipe.

    M2NIST's 5000 fixed images reuse each digit layout every epoch; drawing new compositions each
    epoch (seeded by ``seed`` and the epoch, so runs and resumes are reproducible) is the cheapest
    augmentation there is and keeps labels exact.
    """

    def __init__(self, n: int, seed: int, augment: object | None = None, root: Path = MNIST_DIR):
        self.n, self.seed, self.augment = n, seed, augment
        self.digits, self.labels = digit_pool("train", root)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.images, self.masks = compose(self.digits, self.labels, self.n, rng)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return SegmentationSet(self.images, self.masks, self.augment)[i]


class WildM2NIST(FreshM2NIST):
    """:class:`FreshM2NIST` where a share ``wild`` of the images are real-world-like (see :mod:`segapp.synth`).

    Each wild image is drawn from its own generator seeded by (seed, epoch, index), so runs,
    resumes and DataLoader workers all see the same images. Labels may hold
    :data:`segapp.classes.VOID` (the faint stroke edge), which the loss skips.
    """

    def __init__(self, n: int, seed: int, wild: float, augment: object | None = None, root: Path = MNIST_DIR):
        self.wild = wild
        super().__init__(n, seed, augment, root)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        super().set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from .synth import wild_sample

        rng = np.random.default_rng([self.seed, self.epoch, i, 7])
        if rng.random() >= self.wild:
            return super().__getitem__(i)
        image, mask = wild_sample(rng, self.digits, self.labels)
        return to_tensor(image)[0], torch.from_numpy(mask).long()


"""Kaggle M2NIST pairs: ``combined.npy`` + one-hot ``segmented.npy``, read (checked) and written.

A user's own data in the Kaggle layout is the one outside file format `segapp train --kaggle` and
`segapp evaluate --kaggle` read, so every way such a pair can be malformed is refused here with a
:class:`~segapp.m2nist.DataError` naming the file, before any training or scoring starts.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .classes import NUM_CLASSES
from .m2nist import DataError
from .safeio import write_atomic


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

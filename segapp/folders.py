"""Folder datasets: ``DIR/images/<rel>.<ext>`` + ``DIR/masks/<rel>.png``, the layout `segapp predict` writes.

Masks are class-index PNGs (pixel value = class: 0-9 digits, 10 background, 255 void = not scored),
exactly what `segapp predict` writes to ``OUT/masks``, so predict -> correct a few masks -> train or
evaluate is a closed loop. An RGB mask painted in segapp's palette is converted back to indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import NUM_CLASSES, PALETTE, SegappError
from .images import IMAGE_EXTENSIONS, ImageError, Prepared, prepare

VOID = 255  # mask value left out of every metric and loss


class FolderError(SegappError):
    """A folder dataset is missing or one of its pairs is unusable; the message names the files."""


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    rel: str


def find_pairs(root: Path) -> list[Pair]:
    """All (image, mask) pairs of a folder dataset, sorted by relative path."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise FolderError(f"{root}: a folder dataset needs images/ and masks/ subfolders with matching names "
                          "(masks as class-index PNGs, as `segapp predict` writes them)")
    pairs, missing = [], []
    for img in sorted(p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        rel = img.relative_to(images)
        mask = masks / rel.with_suffix(".png")
        if not mask.is_file():
            mask = masks / (str(rel) + ".png")  # predict's name when two inputs differ only by extension
        if mask.is_file():
            pairs.append(Pair(img, mask, str(rel)))
        else:
            missing.append(str(rel))
    if not pairs:
        raise FolderError(f"{root}: no image in images/ has a mask in masks/ (e.g. images/a.jpg -> masks/a.png)")
    if missing:
        raise FolderError(f"{root}: {len(missing)} images have no mask, e.g. images/{missing[0]} (expected "
                          f"masks/{Path(missing[0]).with_suffix('.png')}); add the masks or move those images out")
    return pairs


def read_mask(path: Path) -> np.ndarray:
    """A mask PNG -> (H, W) uint8 class indices (0-10, 255 void); palette-coloured RGB masks are converted."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "L"):
                m = np.asarray(img, np.uint8).copy()
            elif img.mode in ("RGB", "RGBA"):
                m = _from_colours(np.asarray(img.convert("RGB")), path)
            else:
                raise FolderError(f"{path}: mask mode {img.mode}; save it as an 8-bit class-index PNG")
    except FolderError:
        raise
    except (OSError, ValueError) as e:
        raise FolderError(f"{path}: cannot read the mask ({e})") from None
    bad = (m >= NUM_CLASSES) & (m != VOID)
    if bad.any():
        raise FolderError(f"{path}: class index {int(m[bad][0])} out of range; masks hold 0-9 digits, 10 background, "
                          f"{VOID} void")
    return m


def _from_colours(rgb: np.ndarray, path: Path) -> np.ndarray:
    """RGB painted in segapp's palette (black = background) -> class indices."""
    colours = np.vstack([PALETTE[:10], [[0, 0, 0]]]).astype(np.int32)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    match = (flat[:, None, :] == colours[None]).all(-1)
    if not match.any(1).all():
        raise FolderError(f"{path}: an RGB mask whose colours are not segapp's palette; save class indices "
                          "(pixel value = class) as an 8-bit PNG instead")
    return match.argmax(1).astype(np.uint8).reshape(rgb.shape[:2])


def load_pair(pair: Pair) -> tuple[Prepared, np.ndarray]:
    """Decodes one pair; refuses a mask whose size differs from its image's."""
    try:
        prepared = prepare(pair.image, str(pair.image))
    except ImageError as e:
        raise FolderError(str(e)) from None
    mask = read_mask(pair.mask)
    if mask.shape != prepared.raw.shape:
        h, w = prepared.raw.shape
        raise FolderError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but {pair.image} is {w}x{h}; "
                          "masks must match their image pixel for pixel")
    return prepared, mask

"""Folder datasets: ``DIR/images/<rel>.<ext>`` + ``DIR/masks/<rel>.png``, the layout `segapp predict` writes.

Masks are class-index PNGs (pixel value = class: 0-9 digits, 10 background, 255 void = not scored),
exactly what `segapp predict` writes to ``OUT/masks``, so predict -> correct a few masks -> train or
evaluate is a closed loop. An RGB mask painted in segapp's palette is converted back to indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import SegappError
from .images import IMAGE_EXTENSIONS, ImageError, Prepared, prepare
from .mask_files import MaskError, read_mask

__all__ = ["read_mask"]  # re-exported: a folder dataset's masks are read by segapp.mask_files' one reader


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


def load_pair(pair: Pair) -> tuple[Prepared, np.ndarray]:
    """Decodes one pair; refuses a mask whose size differs from its image's."""
    try:
        prepared = prepare(pair.image, str(pair.image))
    except ImageError as e:
        raise FolderError(str(e)) from None
    try:
        mask = read_mask(pair.mask)
    except MaskError as e:
        raise FolderError(str(e)) from None
    except OSError as e:
        raise FolderError(f"{pair.mask}: cannot read the mask ({e})") from None
    if mask.shape != prepared.raw.shape:
        h, w = prepared.raw.shape
        raise FolderError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but {pair.image} is {w}x{h}; "
                          "masks must match their image pixel for pixel")
    return prepared, mask


class FolderSet(Dataset):
    """Training windows from a folder dataset, at the scale the net will see them.

    Each pair goes through the inference path's scale normalisation (:func:`segapp.scale.to_net_scale`;
    the mask is resized with it, nearest-neighbour, void kept), so a folder of phone photos trains the
    net on what `segapp predict` will feed it. Items are random ``size`` windows (zero-padded where the
    image is smaller), drawn from a generator seeded by (seed, epoch, index): reproducible, resumable.
    With ``share`` < 1 the rest of each epoch comes from ``other`` (e.g. the M2NIST recipe).
    """

    def __init__(self, pairs: list[Pair], n: int, seed: int, size: tuple[int, int] = (64, 84),
                 other: Dataset | None = None, share: float = 1.0):
        from .scale import to_net_scale

        self.images, self.masks = [], []
        for pair in pairs:
            prepared, mask = load_pair(pair)
            net = to_net_scale(prepared)
            h, w = net.image.shape
            self.images.append(net.image)
            self.masks.append(mask if mask.shape == (h, w) else cv2.resize(mask, (w, h),
                                                                           interpolation=cv2.INTER_NEAREST))
        self.n, self.seed, self.size, self.other, self.share = n, seed, size, other, share
        self.augment = None  # the training engine seeds augmentations it finds here
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.other is not None and hasattr(self.other, "set_epoch"):
            self.other.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i, 13])
        if self.other is not None and rng.random() >= self.share:
            return self.other[i % len(self.other)]
        k = int(rng.integers(0, len(self.images)))
        return window(self.images[k], self.masks[k], self.size, rng)


def window(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator):
    """A random ``size`` window of an image and its mask (zero / background padding), as tensors."""
    from .classes import BACKGROUND

    H, W = size
    h, w = image.shape
    y = int(rng.integers(0, max(h - H, 0) + 1))
    x = int(rng.integers(0, max(w - W, 0) + 1))
    img = np.zeros((H, W), np.uint8)
    lab = np.full((H, W), BACKGROUND, np.uint8)
    crop = image[y : y + H, x : x + W]
    img[: crop.shape[0], : crop.shape[1]] = crop
    lab[: crop.shape[0], : crop.shape[1]] = mask[y : y + H, x : x + W]
    return torch.from_numpy(img).float().div_(255.0)[None], torch.from_numpy(lab).long()


def split_pairs(root: Path, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, val) pairs: ``root/train`` + ``root/val`` when both exist, else a fixed 10% of ``root`` as val."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return find_pairs(root / "train"), find_pairs(root / "val")
    pairs = find_pairs(root)
    if len(pairs) < 2:
        raise FolderError(f"{root}: {len(pairs)} image/mask pair; training needs at least 2 (one is held out "
                          "for validation), or give train/ and val/ subfolders")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = max(1, len(pairs) // 10)
    return [pairs[i] for i in sorted(order[n_val:])], [pairs[i] for i in sorted(order[:n_val])]


def val_windows(pairs: list[Pair], size: tuple[int, int] = (64, 84)) -> tuple[np.ndarray, np.ndarray]:
    """Fixed validation windows (the top-left ``size`` of each pair at net scale) as (N, H, W) arrays."""
    sets = FolderSet(pairs, len(pairs), seed=0, size=size)
    rng = np.random.default_rng(0)
    items = [window(img, m, size, rng) for img, m in zip(sets.images, sets.masks)]
    images = np.stack([(x[0].numpy() * 255).round().astype(np.uint8) for x, _ in items])
    return images, np.stack([y.numpy().astype(np.uint8) for _, y in items])

"""Arrays -> tensors: the net's input format, label-consistent augmentation, the training datasets.

What the training loop iterates over: in-memory sets (:class:`SegmentationSet`) and sets recomposed from the
M2NIST recipe every epoch (:class:`FreshM2NIST`, :class:`WildM2NIST`). Apart from the recipe itself
(:mod:`segapp.m2nist`) because only training and scoring need torch datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .classes import BACKGROUND
from .m2nist import compose, digit_pool
from .paths import MNIST_DIR  # the bundled MNIST files, found in a checkout and in a wheel


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

    def __init__(self, n: int, seed: int, wild: float, augment: object | None = None, root: Path = MNIST_DIR,
                 ruled: float = 0.3, letters: float = 0.0):
        from .synth import WildConfig

        self.wild = wild
        # ruled: share of photographed pages that are notebook paper; letters: share of glyphs that are not digits
        self.recipe = WildConfig(ruled=ruled, letters=letters)
        super().__init__(n, seed, augment, root)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        super().set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from .synth import wild_sample

        rng = np.random.default_rng([self.seed, self.epoch, i, 7])
        if rng.random() >= self.wild:
            return super().__getitem__(i)
        image, mask = wild_sample(rng, self.digits, self.labels, self.recipe)
        return to_tensor(image)[0], torch.from_numpy(mask).long()

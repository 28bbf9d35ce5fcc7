"""Class map -> what people and files get: digits read out, overlays, legends, palette mask PNGs.

Shared by the web demo and `segapp predict` so both read digits and colour them identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .classes import BACKGROUND, CLASS_NAMES, MIN_DIGIT_AREA, NUM_DIGITS, PALETTE, flat_palette
from .data import to_tensor
from .images import Prepared

# Inside one connected blob of digit pixels, a second class counts as its own digit only when it
# covers at least this share of the blob's main class (touching digits); smaller minorities are
# misclassified stroke pixels of the main digit.
MINORITY_SHARE = 0.3


@dataclass
class Segmentation:
    """Everything one image's inference yields."""

    classes: np.ndarray  # (H, W) uint8 class map, 0-9 digits, 10 background
    confidence: np.ndarray  # (H, W) float32 softmax probability of the chosen class
    prepared: Prepared
    digits: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The digits read left to right, e.g. ``"5 0 4"``."""
        return " ".join(str(d["digit"]) for d in self.digits)

    def summary(self) -> dict:
        h, w = self.classes.shape
        return {"width": w, "height": h, "text": self.text, "digits": self.digits, "polarity": self.prepared.polarity}


def read_digits(classes: np.ndarray, confidence: np.ndarray, min_area: int = MIN_DIGIT_AREA) -> list[dict]:
    """Finds the digits in a class map, left to right.

    Digit pixels are grouped into 8-connected blobs; each digit class holding a large enough part
    of a blob (``min_area`` pixels and :data:`MINORITY_SHARE` of the blob's main class) is one digit.

    Returns:
        Dicts with ``digit``, ``area`` (pixels), ``confidence`` (mean softmax probability over the
        digit's pixels) and ``bbox`` ([x0, y0, x1, y1], inclusive-exclusive), sorted by x centre.
    """
    fg = (classes != BACKGROUND).astype(np.uint8)
    n, labels = cv2.connectedComponents(fg, connectivity=8)
    found = []
    for blob in range(1, n):
        inside = labels == blob
        counts = np.bincount(classes[inside], minlength=NUM_DIGITS)[:NUM_DIGITS]
        for d in np.flatnonzero(counts >= max(min_area, MINORITY_SHARE * counts.max())):
            ys, xs = np.nonzero(inside & (classes == d))
            found.append({
                "digit": int(d), "area": int(len(xs)), "confidence": round(float(confidence[ys, xs].mean()), 4),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "_x": float(xs.mean()),
            })
    found.sort(key=lambda f: f.pop("_x"))
    return found


@torch.inference_mode()
def segment_batch(model, prepared: list[Prepared], device: torch.device | str = "cpu") -> list[Segmentation]:
    """Runs the model on same-sized prepared images in one batch, at their native resolution."""
    if not prepared:
        return []
    x = to_tensor(np.stack([p.gray for p in prepared])).to(device).contiguous(memory_format=torch.channels_last)
    classes, conf = model.predict(x)
    classes, conf = classes.to(torch.uint8).cpu().numpy(), conf.float().cpu().numpy()
    return [Segmentation(c, f, p, read_digits(c, f)) for c, f, p in zip(classes, conf, prepared)]


def segment(model, prepared: Prepared, device: torch.device | str = "cpu") -> Segmentation:
    """One image -> :class:`Segmentation`."""
    return segment_batch(model, [prepared], device)[0]


def overlay(display: np.ndarray, classes: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blends each digit's colour over an RGB image; background pixels are left untouched."""
    out = display.astype(np.float32).copy()
    digit = classes != BACKGROUND
    out[digit] = (1 - alpha) * out[digit] + alpha * PALETTE[classes[digit]].astype(np.float32)
    return out.round().astype(np.uint8)


def colour_mask(classes: np.ndarray) -> np.ndarray:
    """Class map -> RGB picture in the palette (background black)."""
    return PALETTE[classes]


def mask_image(classes: np.ndarray) -> Image.Image:
    """Class map -> indexed ('P' mode) Pillow image whose pixel values are the class indices."""
    img = Image.fromarray(np.ascontiguousarray(classes, dtype=np.uint8), mode="P")
    img.putpalette(flat_palette())
    return img


def save_mask(path: Path | str, classes: np.ndarray) -> None:
    """Writes the class map as an 8-bit indexed PNG with the segapp palette embedded."""
    mask_image(classes).save(path, format="PNG", optimize=False)


def read_mask(path: Path | str) -> np.ndarray:
    """Reads a mask PNG back as (H, W) uint8 class indices (no palette lookup)."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: not a segapp mask (mode {img.mode}, expected an indexed PNG)")
        return np.asarray(img, dtype=np.uint8).copy()


def legend_html(present: set[int] | None = None) -> str:
    """Small HTML legend of the digit colours (present classes in bold)."""
    items = []
    for d in range(NUM_DIGITS):
        r, g, b = PALETTE[d]
        weight = "700" if present and d in present else "400"
        items.append(
            f'<span style="display:inline-block;margin:2px 8px 2px 0;font-weight:{weight}">'
            f'<span style="display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:middle;'
            f'background:rgb({r},{g},{b});margin-right:4px"></span>{CLASS_NAMES[d]}</span>'
        )
    return "<div>" + "".join(items) + "</div>"

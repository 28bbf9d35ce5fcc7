"""The one place that defines segapp's classes, colours and mask format.

Class map convention (shared by the data, the model, masks on disk and the demo):
index 0-9 is the handwritten digit of that value, index 10 is background. This matches
the Kaggle M2NIST ``segmented.npy`` channel order.

Mask files are single-channel 8-bit indexed PNGs whose pixel value is the class index and
whose embedded palette is :data:`PALETTE`, so a mask opens as a colour picture in any viewer
and still reads back as class indices with ``PIL.Image.open(path)`` -> ``np.asarray``.
"""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType

import numpy as np


class SegappError(Exception):
    """A problem segapp can explain in one line (bad input, bad arguments, a file it will not touch); exit 2."""


class RecordedConfig:
    """Base of the frozen job configs whose args.json may start from the command line's own record: a dataclass
    with a ``recorded`` field (a mapping, or None) calls :meth:`freeze_record` in its ``__post_init__``."""

    def freeze_record(self) -> None:
        """Frozen means frozen: nobody edits the record after the fact."""
        if self.recorded is not None:
            object.__setattr__(self, "recorded", MappingProxyType(dict(self.recorded)))

    def record(self) -> dict:
        """What args.json holds: ``recorded`` when given, else this config's fields."""
        if self.recorded is not None:
            return dict(self.recorded)
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "recorded"}


NUM_DIGITS = 10
BACKGROUND = 10
NUM_CLASSES = 11
VOID = 255  # mask value no metric or loss counts: a folder dataset's unlabelled pixels, a stroke's faint edge
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(NUM_DIGITS)) + ("background",)

# One fixed colour per digit, chosen (greedy max-min search over a grid of colours of lightness 40-85
# and chroma > 35, so they show on black canvases and on paper) so that every pair stays at least
# 24 CIELAB units apart for normal vision and under simulated protanopia, deuteranopia and
# tritanopia (Machado et al. 2009).
# tests/test_render.py re-checks this. Background is black in masks and left untouched in overlays.
PALETTE = np.array(
    [
        (238, 68, 0),  # 0 vermilion
        (153, 221, 102),  # 1 light green
        (204, 221, 17),  # 2 yellow
        (0, 153, 255),  # 3 azure
        (187, 119, 85),  # 4 tan
        (119, 17, 255),  # 5 violet
        (0, 238, 187),  # 6 aqua
        (204, 34, 136),  # 7 magenta
        (255, 187, 255),  # 8 pink
        (170, 0, 170),  # 9 purple
        (0, 0, 0),  # background
    ],
    dtype=np.uint8,
)

# Connected components of a digit class smaller than this many pixels are treated as specks
# (stray pixels at stroke ends, overlap seams) and not reported as digits.
MIN_DIGIT_AREA = 20

# A digit whose pixels average a softmax confidence below this is not reported either: on paper with no digits,
# specks the scale normaliser blew up read as low-confidence digits (0.38-0.62; 4 of 150 blank pages, robustness
# seed 400), while every correctly read digit on the development seeds (100, 400: ~8,000 digits) stayed above 0.69.
MIN_DIGIT_CONFIDENCE = 0.65

# A digit's box at the net's scale (digits about 20 px tall): shorter than this, taller than MAX_DIGIT_HEIGHT (a
# margin line, a frame) or wider than MAX_DIGIT_ASPECT times its height, it is a ruled line, a crease or a speck the
# net coloured, not a digit (blank pages, dev set).
MIN_DIGIT_HEIGHT = 8
MAX_DIGIT_HEIGHT = 80
MAX_DIGIT_ASPECT = 3.0

# A reading whose confidence (the product of its digits' confidences: see Segmentation.confidence) is below this
# is worth a person's look before it is trusted. Chosen on development hands and real people's digits (700 numbers,
# 92.9% read: 18% of readings under it, holding 80% of the misreads); on the held-out ones (robustness seed 500, 900
# numbers, 88.7% read) 20% fall under it and hold 71% of the misreads, and the rest read 95.9% right.
REVIEW_BELOW = 0.8


def needs_review(confidence: float | None) -> bool:
    """Whether a reading of this confidence is one to check (a reading of nothing has none: never flagged)."""
    return confidence is not None and confidence < REVIEW_BELOW

# Safety limit for decoded images (demo and batch prediction): about 4096 x 4096 pixels.
MAX_PIXELS = 4096 * 4096


def hex_colour(cls: int) -> str:
    """Colour of a class as ``#rrggbb`` (for legends and Gradio's colour maps)."""
    r, g, b = (int(v) for v in PALETTE[cls])
    return f"#{r:02x}{g:02x}{b:02x}"


def flat_palette() -> list[int]:
    """The palette as the flat 768-entry list PIL's ``Image.putpalette`` expects."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[: len(PALETTE)] = PALETTE
    return pal.reshape(-1).tolist()

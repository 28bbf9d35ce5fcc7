"""The one place that defines segapp's classes, colours and mask format.

Class map convention (shared by the data, the model, masks on disk and the demo):
index 0-9 is the handwritten digit of that value, index 10 is background. This matches
the Kaggle M2NIST ``segmented.npy`` channel order.

Mask files are single-channel 8-bit indexed PNGs whose pixel value is the class index and
whose embedded palette is :data:`PALETTE`, so a mask opens as a colour picture in any viewer
and still reads back as class indices with ``PIL.Image.open(path)`` -> ``np.asarray``.
"""

from __future__ import annotations

import numpy as np


class SegappError(Exception):
    """A problem segapp can explain in one line (bad input, bad arguments, a file it will not touch); exit 2."""


NUM_DIGITS = 10
BACKGROUND = 10
NUM_CLASSES = 11
CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(NUM_DIGITS)) + ("background",)

# One fixed, distinguishable colour per digit (Tableau-10-like, tuned for contrast on both
# black and white backgrounds); background is black in masks and left untouched in overlays.
PALETTE = np.array(
    [
        (230, 25, 75),  # 0 red
        (60, 180, 75),  # 1 green
        (255, 225, 25),  # 2 yellow
        (0, 130, 200),  # 3 blue
        (245, 130, 48),  # 4 orange
        (145, 30, 180),  # 5 purple
        (70, 240, 240),  # 6 cyan
        (240, 50, 230),  # 7 magenta
        (210, 245, 60),  # 8 lime
        (170, 110, 40),  # 9 brown
        (0, 0, 0),  # background
    ],
    dtype=np.uint8,
)

# Connected components of a digit class smaller than this many pixels are treated as specks
# (stray pixels at stroke ends, overlap seams) and not reported as digits.
MIN_DIGIT_AREA = 20

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

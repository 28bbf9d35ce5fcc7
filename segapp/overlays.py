"""Class map -> pictures for people: each digit tinted in its class colour over the input, and the colour legend.

Shared by the web demo and `segapp predict` so both colour digits identically; :func:`overlay_gray` is the
table-lookup path that gives :func:`overlay`'s exact bytes for grayscale inputs (`segapp predict`'s overlays).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .classes import BACKGROUND, CLASS_NAMES, NUM_DIGITS, PALETTE


def overlay(display: np.ndarray, classes: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blends each digit's colour over an RGB image; background pixels are left untouched."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay opacity {alpha} is outside 0..1")
    out = display.copy()
    digit = classes != BACKGROUND
    blend = (1 - alpha) * display[digit].astype(np.float32) + alpha * PALETTE[classes[digit]].astype(np.float32)
    out[digit] = blend.round().astype(np.uint8)
    return out


@lru_cache(maxsize=8)
def _blend_table(alpha: float) -> np.ndarray:
    """(11, 256, 3) uint8: the overlay colour of each gray level under each class (0-9, then background), by
    :func:`overlay`'s own float32 arithmetic (so the same bytes); the background row is the gray level itself."""
    gray = np.arange(256, dtype=np.float32)[None, :, None]
    table = ((1 - alpha) * gray + alpha * PALETTE[:NUM_DIGITS].astype(np.float32)[:, None, :]).round()
    return np.concatenate([table.astype(np.uint8), np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, 2)])


def overlay_gray(gray: np.ndarray, classes: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """:func:`overlay` of a grayscale image shown as RGB (``Prepared.display``), by one table lookup per pixel:
    the same pixels, without the float arithmetic and the RGB copy per image (`segapp predict`'s overlays)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay opacity {alpha} is outside 0..1")
    return _blend_table(float(alpha))[classes, gray]


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

"""Straight lines in ink: a notebook's rules, a squared page's grid, a margin, a form's boxes.

No digit holds a long straight stroke, so what runs on straight is the page's printing, not writing. It is asked
at two scales: by the scale estimate (:mod:`segapp.ink_parts`) before any digit height is known, against the page's
own size (:func:`page_lines`), and at the net's scale in digit heights (:func:`segapp.ruled.ruled_lines`).
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_PAGE_LINE = 16  # px at analysis scale: a line shorter than this is no page's (the image is a small crop)
PAGE_GAP = 8  # a page's line is followed across gaps of 1/PAGE_GAP of its length (light, JPEG, a stroke crossing)
PAGE_DRIFT = 5  # px: ink is widened this much across a page's line before it is followed (a page photographed
# askew: a 2 px line drifting 4 px over the page stays in one row or column)
CROSSING = 11  # px: a page's line with its soft edges is narrower than this where a stroke crosses it


def runs(binary: np.ndarray, length: int, gap: int, vertical: bool, across: int = 1) -> np.ndarray:
    """(h, w) uint8 0/1: the horizontal (or ``vertical``) runs of ``binary`` ink at least ``length`` px long, gaps
    of up to ``gap`` px along them bridged first. With ``across`` > 1 the ink is widened by that many pixels
    across the runs before they are followed, and what is found narrowed back after."""
    b = binary.astype(np.uint8)
    def line(n: int) -> np.ndarray:
        return np.ones((n, 1) if vertical else (1, n), np.uint8)
    wide = np.ones((1, across) if vertical else (across, 1), np.uint8)
    found = cv2.morphologyEx(cv2.morphologyEx(cv2.dilate(b, wide), cv2.MORPH_CLOSE, line(gap + 1)),
                             cv2.MORPH_OPEN, line(length))
    return cv2.erode(found, wide) if across > 1 else found


def page_lines(binary: np.ndarray) -> np.ndarray:
    """(h, w) bool: the lines of a page in ``binary`` ink running half its width (rows) or height (columns) or
    more, a squared or ruled page's lines or a margin, with the ink within a pixel of them (their soft edges).

    The digit height is not known yet, so a line is measured against the page, not a digit: no digit on a page
    runs half its height in one straight stroke, except digits filling their crop, which the caller keeps when
    nothing else remains.
    """
    b = binary.astype(np.uint8)
    H, W = b.shape
    found = np.zeros_like(b)
    for n, vertical in ((W // 2, False), (H // 2, True)):
        if n >= MIN_PAGE_LINE:
            found |= runs(b, n, n // PAGE_GAP, vertical, PAGE_DRIFT)
    near = np.ones((3, 3), np.uint8)
    return (cv2.dilate(found, near) & cv2.dilate(b, near)).astype(bool)


def edge_to_edge(binary: np.ndarray) -> bool:
    """Whether a connected part of ``binary`` ink runs from edge to edge of the image (top to bottom or left to
    right): a page's lines, or its whole grid as one part."""
    H, W = binary.shape
    if not ((binary[0].any() and binary[-1].any()) or (binary[:, 0].any() and binary[:, -1].any())):
        return False  # the common case, without a labelling
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    x, y, w, h = (stats[1:, i] for i in range(4))
    return bool((((y == 0) & (y + h == H)) | ((x == 0) & (x + w == W))).any())


def without_page_lines(ink: np.ndarray, binary: np.ndarray) -> np.ndarray | None:
    """``ink`` with the page's lines in its ``binary`` ink (:func:`page_lines`) erased, except where a stroke
    crosses them (ink on both sides within :data:`CROSSING` px): a digit cut by a line stays whole. None: no
    line."""
    lines = page_lines(binary)
    if not lines.any():
        return None
    rest = binary.astype(np.uint8) & ~lines
    crossed = (cv2.morphologyEx(rest, cv2.MORPH_CLOSE, np.ones((1, CROSSING), np.uint8))
               | cv2.morphologyEx(rest, cv2.MORPH_CLOSE, np.ones((CROSSING, 1), np.uint8)))
    return np.where(lines & (crossed == 0), 0, ink).astype(ink.dtype)

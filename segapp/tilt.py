"""A number photographed at a tilt: the text's angle found from its ink, and the image turned upright for the net.

The net learnt MNIST's upright digits; a phone held at an angle turns them, and a number tilted 20-30 degrees lost
a quarter to a half of its readings (held hands photographed, analysis seed 114: 56 of 60 upright, 43 at 20
degrees, 33 at 30). The digits of a line stand on one baseline, so the line's angle is the one at which its ink's
rows are most concentrated: the projection profile across the line is sharpest (the classic deskew of document
scans, :func:`text_tilt`). The image is then read turned upright and its mask turned back, so masks still align
pixel for pixel with the input (:func:`upright`, :func:`turn_back`).

A number of one or two digits has no baseline to measure (M2NIST places a number's digits up to 1.8 digit heights
apart), so only three parts or more are measured, and only an angle that is clearly there is acted on: at least
:data:`MIN_TILT` degrees, with a profile :data:`SHARPER` times as concentrated as upright.
"""

from __future__ import annotations

import cv2
import numpy as np

from .classes import BACKGROUND
from .images import Prepared
from .render import Segmentation

MIN_TILT = 8.0  # degrees; a smaller tilt is read as it is (the net reads 10 degrees about as well as upright)
MAX_TILT = 40.0  # degrees either way that are searched; beyond, a number is more likely written on purpose so
STEP = 1.0  # degrees between the angles tried
SHARPER = 1.3  # how much more concentrated the profile must be at the angle found than upright
MIN_PARTS = 3  # ink parts (digits) whose angle is measured: two digits have no baseline to measure
SURE_PARTS = 4  # ink parts from which a tilt found is no chance (an M2NIST canvas holds at most three digits a row)
PART_SHARE = 0.5  # a part counts when it is at least this share of the median part's height (no specks, no dots)
ONE_LINE = 1.5  # digit heights: the band across the line at the angle found ...
IN_LINE = 0.9  # ... that must hold this share of the ink (one line of digits; its tallest digits reach out of it)
DETAIL = 4.0  # an upright canvas keeps digits this many times the net's size (80 px), however large the photo
MEASURED_INK = 64  # a quarter of full intensity: the ink measured (as segapp.ink_parts measures the digit height)


def text_tilt(image: np.ndarray) -> float:
    """(h, w) uint8 white-on-black normalised image, digits about the net's size -> the angle in degrees by which
    its text is turned counterclockwise (OpenCV's convention: :func:`upright` turns it back), or 0.0 where it
    stands upright or no angle is clearly there.

    The ink of its digits (parts at least :data:`PART_SHARE` of the median part's height; :data:`MIN_PARTS` or
    more) is projected across lines at each angle up to :data:`MAX_TILT` either way; the angle whose profile is
    most concentrated (fewest, fullest rows: the sum of squared counts, in bins a sixth of a digit tall) is the
    text's, where it is at least :data:`MIN_TILT`, short of the search's edge, and :data:`SHARPER` times as
    concentrated as upright."""
    labels, stats, parts = _digit_parts(image)
    if len(parts) < MIN_PARTS:
        return 0.0
    ys, xs = np.nonzero(np.isin(labels, parts))
    xs, ys = xs - xs.mean(), ys - ys.mean()
    bin_px = max(1.0, float(np.median(stats[parts, cv2.CC_STAT_HEIGHT])) / 6)
    angles = np.arange(-MAX_TILT, MAX_TILT + STEP / 2, STEP)
    scores = np.empty(len(angles))
    for k, a in enumerate(np.radians(angles)):
        across = ys * np.cos(a) - xs * np.sin(a)  # each ink pixel's distance across a line at angle a
        counts = np.bincount(((across - across.min()) / bin_px).astype(np.int64)).astype(np.float64)
        scores[k] = (counts**2).sum()
    best = int(np.argmax(scores))
    edge = abs(angles[best]) > MAX_TILT - 2 * STEP  # the best at the search's edge: a block's shape, not a line
    if edge or abs(angles[best]) < MIN_TILT or scores[best] < SHARPER * scores[len(angles) // 2]:
        return 0.0
    a = np.radians(angles[best])
    across = np.sort(ys * np.cos(a) - xs * np.sin(a))
    band = ONE_LINE * float(np.median(stats[parts, cv2.CC_STAT_HEIGHT]))
    inside = np.searchsorted(across, across + band) - np.arange(len(across))  # ink within a band from each pixel
    if inside.max() < IN_LINE * len(across):  # not one line of digits: two rows, or a canvas's scattered digits
        return 0.0
    return float(-angles[best])


def must_turn(image: np.ndarray) -> bool:
    """Whether a tilted line (:func:`text_tilt` found its angle) holds :data:`SURE_PARTS` digits or more: a line
    that long is no canvas's few digits lining up by chance, and its upright reading is taken as it is (a shorter
    one is read both ways, the surer reading kept)."""
    return len(_digit_parts(image)[2]) >= SURE_PARTS


def _digit_parts(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ink's connected parts (labels, stats) and the labels of those a digit's size: at least
    :data:`PART_SHARE` of the median part's height (no specks, no i's dots)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats((image >= MEASURED_INK).astype(np.uint8), connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    if len(heights) == 0:
        return labels, stats, np.zeros(0, np.int64)
    return labels, stats, np.nonzero(heights >= PART_SHARE * np.median(heights))[0] + 1


def turning(degrees: float, h: int, w: int, margin: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """The 2x3 affine matrix turning an (h, w) image by ``degrees`` counterclockwise about its centre into a canvas
    that holds all of it (with ``margin`` px more across and down), and that canvas's (width, height)."""
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    W, H = int(np.ceil(h * s + w * c)) + margin, int(np.ceil(h * c + w * s)) + margin
    m[0, 2] += W / 2 - w / 2
    m[1, 2] += H / 2 - h / 2
    return m, (W, H)


def upright(raw: np.ndarray, tilt: float, shrink: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W) uint8 image whose text is turned ``tilt`` degrees -> (the image turned upright on a canvas that holds
    all of it, its border continued from the image's edge so no frame of new ink appears; a bool map of the
    canvas's pixels that come from the image, where a digit must stand (the continued border streaks); the 2x3
    matrix from the upright canvas back to the input's pixels). ``shrink`` < 1: the canvas is that much smaller
    than the image (a phone photo's digits, hundreds of px tall, need not be turned at full size)."""
    H, W = raw.shape
    if shrink < 1.0:
        raw = cv2.resize(raw, (max(1, round(W * shrink)), max(1, round(H * shrink))), interpolation=cv2.INTER_AREA)
    h, w = raw.shape
    m, size = turning(-tilt, h, w)
    turned = cv2.warpAffine(raw, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones((h, w), np.uint8), m, size, flags=cv2.INTER_NEAREST, borderValue=0)
    back = cv2.invertAffineTransform(m) * np.array([[W / w], [H / h]])  # to the reduced copy, then to the input
    return turned, inside.astype(bool), back


def detail(scale: float) -> float:
    """How much smaller than the input its upright canvas may be (:func:`upright`'s ``shrink``), for an input read at
    ``scale`` net px per input px: the canvas keeps the digits :data:`DETAIL` times the net's size (its mask is cut
    to the ink at the input's own pixels afterwards)."""
    return min(1.0, DETAIL * scale)


def turn_back(classes: np.ndarray, back: np.ndarray, shape: tuple[int, int], fill: int) -> np.ndarray:
    """(h', w') class map of the upright canvas -> (H, W) class map of the input (nearest class; ``fill`` where the
    canvas did not reach)."""
    H, W = shape
    return cv2.warpAffine(classes, back, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=int(fill))


def box_back(box: list[int], back: np.ndarray, shape: tuple[int, int]) -> list[int]:
    """[x0, y0, x1, y1] in the upright canvas -> the box in the input's pixels that holds it, clipped."""
    H, W = shape
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ back.T
    lo, hi = np.floor(corners.min(0)), np.ceil(corners.max(0))
    return [int(np.clip(lo[0], 0, W)), int(np.clip(lo[1], 0, H)), int(np.clip(hi[0], 0, W)), int(np.clip(hi[1], 0, H))]


def turned_back(sub: Segmentation, prepared: Prepared, inside: np.ndarray, back: np.ndarray) -> Segmentation:
    """The reading of the upright canvas (:func:`upright`) as the input's: its class map turned back (nearest
    class), digits' boxes in the input's pixels, its lines and order kept. A digit standing mostly where the canvas
    only continues the image's border is dropped, pixels and all (the border's streaks read as a "1")."""
    shape = prepared.raw.shape
    classes = np.where(inside, sub.classes, BACKGROUND).astype(np.uint8)
    digits = []
    for d in sub.digits:
        x0, y0, x1, y1 = d["bbox"]
        mine = sub.classes[y0:y1, x0:x1] == d["digit"]
        if mine.any() and inside[y0:y1, x0:x1][mine].mean() >= 0.5:
            digits.append({**d, "bbox": box_back(d["bbox"], back, shape)})
        else:
            classes[y0:y1, x0:x1][mine] = BACKGROUND
    renumber = {k: i for i, k in enumerate(sorted({d["line"] for d in digits}))}  # a line left empty goes
    for d in digits:
        d["line"] = renumber[d["line"]]
    lines = [" ".join(str(d["digit"]) for d in digits if d["line"] == i) for i in range(len(renumber))]
    shrink = 1.0 / float(np.hypot(back[0, 0], back[1, 0]))  # canvas px per input px
    return Segmentation(turn_back(classes, back, shape, BACKGROUND), prepared, digits, lines,
                        scale=sub.scale * shrink,
                        digit_height=None if sub.digit_height is None else sub.digit_height / shrink,
                        words_left_out=[box_back(b, back, shape) for b in sub.words_left_out])


__all__ = ["MIN_TILT", "MAX_TILT", "text_tilt", "must_turn", "turning", "upright", "detail", "turn_back", "box_back",
           "turned_back"]

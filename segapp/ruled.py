"""A notebook's ruled lines at the net's scale: finding them, erasing them from the net's input, and telling a
digit on the lines from the lines themselves.

The net, which sees 45 px at a time, colours a rule's stretch as a 1 and where lines cross as a 7 or a 4, and misreads
the digits a rule runs through; a faint rule beside a number becomes a row of 1s. These rules keep the lines out of
the reading while the strokes they cross stay whole. :class:`segapp.inference.Segmenter` erases the rules in
:meth:`~segapp.inference.Segmenter.preprocess` and drops what is the lines in
:meth:`~segapp.inference.Segmenter.postprocess`; the rest of the reading's rules are :mod:`segapp.postprocess`'s.
"""

from __future__ import annotations

import cv2
import numpy as np

from .classes import BACKGROUND
from .lines import runs
from .normalise import normalise
from .postprocess import digit_pixels
from .scale import TARGET_HEIGHT

LINE_LENGTH = 2.5  # digit heights: straight ink at least this long is a ruled line, not a digit's stroke
RULE_INK = 32  # of 255: normalised ink from which a pixel may belong to a ruled line (a faint notebook margin)
RULE_GAP = 4  # px at net scale: breaks along a ruled line that it still bridges (noise, JPEG blocks)
LINE_SHARE = 0.5  # a "digit" with this share of its pixels on ruled lines is the lines (where a margin crosses a rule)
SURE_LINE_SHARE = 0.8  # ... or, when the net is sure of it (SURE_DIGIT), this share: a blurred digit a rule crosses
SURE_DIGIT = 0.9  # mean confidence from which a digit is the net's sure reading (see on_the_lines)
DIGIT_INK = 64  # of 255: a pen's 1 reaches this (a quarter of full ink) somewhere at the net's scale (see inked)
FAINT_RULE_INK = 12  # of 255: the faintest ink a ruled line is followed along to erase it from the net's input
RULE_TRACE = 8  # of 255: the faintest ink along which a ruled line is followed past a faint "1" (see inked)
RULE_CONTRAST = 2.0  # a "1" on a rule's line with ink under this many times the rule's is the rule (see inked)


def ruled_lines(image: np.ndarray, level: int = RULE_INK, digit_height: float = TARGET_HEIGHT) -> np.ndarray:
    """(h, w) bool: the straight horizontal and vertical lines of a net-scale image (ruled paper, a margin, a form's
    boxes), at least :data:`LINE_LENGTH` digit heights long (``digit_height``: px), of ink from ``level``, widened by
    a pixel for their soft edges.

    The net, which sees 45 px at a time, colours where such lines cross as a 7 or a 4 and a rule's stretch as a
    1: on ruled blank pages that was every page misread (dev set). No digit holds a straight stroke 2.5 digit
    heights long, so a digit mostly made of such lines is none, and a line through a digit is not part of it.
    """
    ink = (image >= level).astype(np.uint8)
    n = int(LINE_LENGTH * digit_height)
    if not ink.any() or max(image.shape) < n:
        return np.zeros(image.shape, bool)
    # A faint rule in a noisy photo or a JPEG dips below the level here and there: gaps of up to RULE_GAP px
    # along the line are closed first (a digit's own strokes are far shorter than a line, gaps or not).
    found = runs(ink, n, RULE_GAP, vertical=False) | runs(ink, n, RULE_GAP, vertical=True)
    return cv2.dilate(found, np.ones((3, 3), np.uint8)).astype(bool)


def erase_rules(image: np.ndarray) -> np.ndarray:
    """The net's input with a notebook's rules erased where no pen stroke crosses them (a new array, or ``image``).

    Rules are followed from faint ink (:data:`FAINT_RULE_INK`: scaled down, a squared page's lines are 15-30 of
    255), and on them only ink under a quarter of full ink (:data:`DIGIT_INK`) is erased, so the strokes a rule
    crosses stay whole. The net was trained with rules under its digits (stage 8) yet still misread digits a rule
    runs through (a narrow 2 as a 1, a 6 as a 0). Development grid pages: seeds 100-101 155 -> 168 of 200 (tuned
    there: lines from 8-20, erased below 64-128: 157-168), seeds 102-103 159 -> 172; the other 24 development
    categories identical at seed 101 (2400 images).
    """
    lines = ruled_lines(image, FAINT_RULE_INK)
    if not lines.any():
        return image
    out = image.copy()
    out[lines & (image < DIGIT_INK)] = 0
    return out


def inked(d: dict, small: np.ndarray, image: np.ndarray) -> bool:
    """Whether a "1" the net coloured is a pen's stroke rather than a stretch of a faint ruled line.

    The net sees ink down to a few levels of 255, so it colours a notebook's faint rules beside a number as 1s
    (their ink 15-30 at the net's scale; too faint for :func:`ruled_lines`, which must not take a digit's stroke
    at that level). A 1 whose ink stays under :data:`DIGIT_INK` (a quarter of full ink) and whose faint straight
    line runs on past it, above or below, or from the image's top to its bottom, is the rule (development grid
    pages, seeds 100-101: 20 of 200 numbers had such 1s). A light-handed digit beside dark ones also stays under
    a quarter (42-64 in a small photo), so every other faint digit is kept, and so is a faint 1 standing alone.
    A rule a little darker than a quarter (65-90) survives :func:`erase_rules` in dotted stretches the net colours
    as 1s; such a 1 is the rule too when its ink is under :data:`RULE_CONTRAST` times the rule's beyond its box.
    """
    x0, y0, x1, y1 = d["bbox"]
    mine = digit_pixels(d, small)
    if not mine.any():
        return False
    if d["digit"] != 1:
        return True
    peak = int(image[y0:y1, x0:x1][mine].max())
    ink = image[:, x0:x1].max(axis=1)  # per row of the image, its strongest ink in the box's columns
    if peak >= RULE_CONTRAST * DIGIT_INK or not _runs_on(ink, y0, y1):
        return True
    return peak >= DIGIT_INK and peak >= RULE_CONTRAST * _rule_ink(ink, y0, y1)


def _beyond(ink: np.ndarray, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``ink`` (per row, the strongest ink in a digit's columns) for the box's height above and below
    its rows ``y0:y1``."""
    h = y1 - y0
    return ink[max(0, y0 - h) : y0], ink[y1 : y1 + h]


def _runs_on(ink: np.ndarray, y0: int, y1: int) -> bool:
    """Whether faint ink (:data:`RULE_TRACE`) runs on in nearly every row for the box's height above or below the
    box (``ink``: see :func:`_beyond`), or the box spans the image's height."""
    if y0 == 0 and y1 == len(ink):
        return True
    return any(len(s) >= (y1 - y0) / 2 and (s >= RULE_TRACE).mean() >= 0.8 for s in _beyond(ink, y0, y1))


def _rule_ink(ink: np.ndarray, y0: int, y1: int) -> float:
    """Median ink of the faint line running on above and below a digit's box (``ink``: see :func:`_beyond`; rows
    under :data:`RULE_TRACE` left out; 0 where there are none)."""
    rows = np.concatenate(_beyond(ink, y0, y1))
    rows = rows[rows >= RULE_TRACE]
    return float(np.median(rows)) if len(rows) else 0.0


def line_share(d: dict, small: np.ndarray, lines: np.ndarray) -> float:
    """Share of a digit's net-scale pixels on ruled lines (a digit on a rule: a few; a rule's corner: all)."""
    x0, y0, x1, y1 = d["bbox"]
    mine = digit_pixels(d, small)
    return float((mine & lines[y0:y1, x0:x1]).sum()) / max(int(mine.sum()), 1)


def on_the_lines(d: dict, small: np.ndarray, lines: np.ndarray) -> bool:
    """Whether a "digit" is ruled lines (where a margin crosses a rule), not a digit written on them.

    A photographed digit's blurred strokes are 4-5 px wide at the net's scale, so a rule through it, widened for
    its soft edges, covers half of them: such digits, read with confidence 0.92-0.96, were dropped. A digit the
    net is sure of (:data:`SURE_DIGIT`) is the lines only from :data:`SURE_LINE_SHARE` of its pixels on them
    (development grid pages, seeds 100-101: 151 -> 156 of 200; blank ruled pages, paper and sensor noise,
    1000 images: none read otherwise).
    """
    share = line_share(d, small, lines)
    return share >= (SURE_LINE_SHARE if d["confidence"] >= SURE_DIGIT else LINE_SHARE)


def off_the_page_lines(full: np.ndarray, digits: list[dict], raw: np.ndarray, inverted: bool) -> list[dict]:
    """The digits read in size groups (:meth:`~segapp.inference.Segmenter.segment_mixed`; ``full``: their class map
    at the input's size) less those that are a page's lines, whose pixels leave ``full`` (in place).

    Each group is read in a crop around it, which cuts a notebook's margin or rules shorter than :func:`ruled_lines`
    and :func:`inked` look for: on a blank notebook frame (development seed 104, frame 141) the margin's stretch
    between two rules, in a crop 42 px tall, was read as a 1 with confidence 0.95. Here each digit is judged as the
    one-pass reading judges it, on the image's whole height and :data:`LINE_LENGTH` of its heights either side,
    normalised as the net's input is (``raw``: the input's gray image, ``inverted`` its polarity), at the net's
    scale (a digit taller than :data:`~segapp.scale.TARGET_HEIGHT` is reduced to it): at the input's size a 600 px
    digit's window on a phone photo took 0.9 s to normalise.
    """
    H, W = full.shape
    kept = []
    for d in digits:
        x0, y0, x1, y1 = d["bbox"]
        m = int(LINE_LENGTH * (y1 - y0)) + 1
        X0, X1 = max(0, x0 - m), min(W, x1 + m)
        window, cut = raw[:, X0:X1], full[:, X0:X1]
        s = min(1.0, TARGET_HEIGHT / (y1 - y0))
        if s < 1:
            size = (max(1, round((X1 - X0) * s)), max(1, round(H * s)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
            cut = cv2.resize(cut, size, interpolation=cv2.INTER_NEAREST)
        window = normalise(window, inverted, faint=True)[0]
        box = [int((x0 - X0) * s), int(y0 * s), max(int((x0 - X0) * s) + 1, round((x1 - X0) * s)),
               max(int(y0 * s) + 1, round(y1 * s))]
        local = {**d, "bbox": box}
        if on_the_lines(local, cut, ruled_lines(window, digit_height=box[3] - box[1])) or not inked(local, cut, window):
            view = full[y0:y1, x0:x1]
            view[view == d["digit"]] = BACKGROUND
            continue
        kept.append(d)
    return kept

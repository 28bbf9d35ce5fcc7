"""Class map -> the digits read out: the result type, digits found in the class map, then grouped into text lines.

Shared by the web demo, `segapp predict` and `segapp evaluate` so all read digits identically. What is drawn or
written from a class map lives beside it: overlays and the legend in :mod:`segapp.overlays`, mask files in
:mod:`segapp.mask_files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .classes import (
    BACKGROUND,
    MAX_DIGIT_ASPECT,
    MAX_DIGIT_HEIGHT,
    MIN_DIGIT_AREA,
    MIN_DIGIT_CONFIDENCE,
    MIN_DIGIT_HEIGHT,
    NUM_DIGITS,
)
from .images import Prepared

# PIECE: short digits stack on none; ROW_SHARE: boxes sharing that share of the shorter one's rows sit in one band
from .split import PIECE, ROW_SHARE, join_beside, join_stacked, split_beside, split_stacked

# Inside one connected blob of digit pixels, a second class counts as its own digit only when it
# covers at least this share of the blob's main class (touching digits); smaller minorities are
# misclassified stroke pixels of the main digit.
MINORITY_SHARE = 0.3
# A blob narrower than this many times its height holds one digit (two touching digits side by side are wider):
# a narrower blob that holds two classes is one digit whose stroke (the stem of a 7, a 2's tail) was misread.
ONE_DIGIT_ASPECT = 0.8
SAME_COLUMNS = 0.4  # of a blob's height: two digits read this close in one blob are one (see _part_of_another)
# A large blob the net colours as one digit but with mean confidence between these two bounds (a hairline or
# unusual hand's 2, say) is read only beside a sure digit of its height in the same rows: it is then a digit of a
# number written there, not a smudge on a blank page (where nothing sure is found, nothing unsure is read).
UNSURE_CONFIDENCE = 0.45
UNSURE_AREA = 40  # pixels at the net's scale (a 20 px digit's stroke covers 60-150)
UNSURE_HEIGHT = (0.7, 1.4)  # its height over the sure neighbour's


@dataclass
class Segmentation:
    """Everything one image's inference yields, in the input's own pixels."""

    classes: np.ndarray  # (H, W) uint8 class map at the input's size, 0-9 digits, 10 background
    prepared: Prepared
    digits: list[dict] = field(default_factory=list)  # reading order: lines top to bottom, each left to right
    lines: list[str] = field(default_factory=list)  # one string per text line, e.g. ["5 0 4", "1 9"]
    scale: float = 1.0  # net pixels per input pixel used by scale normalisation
    digit_height: float | None = None  # estimated (or given) digit height in input pixels
    words_left_out: list[list[int]] = field(default_factory=list)  # [x0, y0, x1, y1] of each glyph of a word left
    # out of the reading and the mask (segapp.words), or of a sign (segapp.signs), so a reviewer sees where segapp saw
    # letters and signs

    @classmethod
    def from_digits(cls, classes: np.ndarray, prepared: Prepared, digits: list[dict], **kw) -> Segmentation:
        """Groups ``digits`` into text lines, numbers them (``line``) and puts them in reading order."""
        lines = group_lines(digits)
        ordered = []
        for i, line in enumerate(lines):
            for d in line:
                d["line"] = i
                ordered.append(d)
        return cls(classes, prepared, ordered, [" ".join(str(d["digit"]) for d in line) for line in lines], **kw)

    @property
    def text(self) -> str:
        """The digits read, lines top to bottom separated by a newline, e.g. ``"5 0 4\n1 9"``."""
        return "\n".join(self.lines)

    @property
    def confidence(self) -> float | None:
        """How far to trust the whole reading: the product of its digits' confidences (each, the mean softmax of its
        class over its pixels), so one unsure digit makes the number unsure, as one misread digit makes it wrong;
        None when nothing was read. Readings under :data:`~segapp.classes.REVIEW_BELOW` are the ones to check."""
        if not self.digits:
            return None
        return float(np.prod([d["confidence"] for d in self.digits]))

    def summary(self) -> dict:
        h, w = self.classes.shape
        c = self.confidence
        return {"width": w, "height": h, "text": self.text, "lines": self.lines, "digits": self.digits,
                "confidence": None if c is None else round(c, 4), "polarity": self.prepared.polarity,
                "digit_height": None if self.digit_height is None else round(self.digit_height, 1),
                "scale": round(self.scale, 4), "words_left_out": self.words_left_out}


def group_lines(digits: list[dict]) -> list[list[dict]]:
    """Digits -> text lines (top to bottom), each sorted left to right.

    Handwriting wanders: digits of one number can sit a whole digit-height above or below their
    neighbours (M2NIST places them up to 1.8 heights apart), so "same line" cannot be a fixed
    vertical overlap. Two facts decide instead: digits stacked above one another (overlapping in x
    by half the narrower width) must be on different lines, and a vertical gap of more than
    :data:`LINE_GAP` digit heights between consecutive digit centres separates lines. Within each
    gap-separated band, the centres are split by 1-D k-means into as many lines as the tallest stack.
    """
    if not digits:
        return []
    cy = lambda d: (d["bbox"][1] + d["bbox"][3]) / 2  # noqa: E731
    height = float(np.median([d["bbox"][3] - d["bbox"][1] for d in digits]))
    ordered = sorted(digits, key=cy)
    bands, band = [], [ordered[0]]
    for prev, d in zip(ordered, ordered[1:]):
        if cy(d) - cy(prev) > LINE_GAP * height:
            bands.append(band)
            band = []
        band.append(d)
    bands.append(band)
    lines = []
    for band in bands:
        k = max(_stack(d, band, PIECE * height) for d in band)
        lines += _rows(band, k, cy, PIECE * height) if k > 1 else [band]
    for line in lines:
        line.sort(key=lambda d: (d["bbox"][0] + d["bbox"][2]) / 2)
    return lines


LINE_GAP = 2.0  # digit heights between consecutive centres that always start a new line


def _stack(d: dict, band: list[dict], min_height: float = 0.0) -> int:
    """How many digits of ``band`` (``d`` included) lie above one another in ``d``'s columns."""
    return sum(m is d or _stacked(d, m, min_height) for m in band)


MAX_ASSIGNMENTS = 50_000  # row assignments tried exhaustively; bands with more fall back to k-means


def _rows(band: list[dict], k: int, cy, min_height: float = 0.0) -> list[list[dict]]:
    """Splits a band of digits into ``k`` rows: of all assignments in which no two stacked digits (see
    :func:`_stack`) share a row, the one whose rows are tightest (least squared spread of centres about
    each row's mean). Handwritten rows wander and may sit a few pixels apart, so nearest-centre k-means
    puts a high digit of the lower row into the upper one; the stacking constraint says which digits
    cannot be neighbours. Large bands (more than :data:`MAX_ASSIGNMENTS` assignments) use k-means."""
    n = len(band)
    k = min(k, n)
    if k ** (n - 1) > MAX_ASSIGNMENTS:
        return _kmeans_rows(band, k, cy)
    ys = np.array([cy(d) for d in band])
    stacked = np.array([[i != j and _stacked(a, b, min_height) for j, b in enumerate(band)]
                        for i, a in enumerate(band)])
    rest = np.array(np.meshgrid(*[np.arange(k)] * (n - 1), indexing="ij")).reshape(n - 1, -1).T
    assign = np.hstack([np.zeros((len(rest), 1), int), rest])  # the first digit's row is 0 (rows are unordered)
    ok = np.ones(len(assign), bool)
    for i, j in zip(*np.nonzero(np.triu(stacked))):
        ok &= assign[:, i] != assign[:, j]
    onehot = assign[..., None] == np.arange(k)  # (m, n, k)
    count = onehot.sum(1)
    ok &= (count > 0).all(1)
    if not ok.any():
        return _kmeans_rows(band, k, cy)
    total = np.einsum("mnk,n->mk", onehot, ys)
    squares = np.einsum("mnk,n->mk", onehot, ys**2)
    spread = (squares - total**2 / np.maximum(count, 1)).sum(1)
    best = assign[np.flatnonzero(ok)[np.argmin(spread[ok])]]
    rows = [[d for d, a in zip(band, best) if a == r] for r in range(k)]
    return sorted(rows, key=lambda row: float(np.mean([cy(d) for d in row])))


def _stacked(d: dict, m: dict, min_height: float = 0.0) -> bool:
    """Whether two digits, each at least ``min_height`` tall, lie above one another: overlapping in x by half the
    narrower width, in y by less than half the shorter height."""
    x0, y0, x1, y1 = d["bbox"]
    mx0, my0, mx1, my1 = m["bbox"]
    if min(y1 - y0, my1 - my0) < min_height:
        return False
    over_x = min(x1, mx1) - max(x0, mx0) >= 0.5 * min(x1 - x0, mx1 - mx0)
    over_y = min(y1, my1) - max(y0, my0) >= 0.5 * min(y1 - y0, my1 - my0)
    return over_x and not over_y


def _kmeans_rows(band: list[dict], k: int, cy) -> list[list[dict]]:
    """Splits a band of digits (sorted by centre y) into ``k`` rows by 1-D k-means on their centres."""
    ys = np.array([cy(d) for d in band])
    k = min(k, len(band))
    centres = np.array([ys[int((i + 0.5) * len(ys) / k)] for i in range(k)], np.float64)
    for _ in range(20):
        assign = np.abs(ys[:, None] - centres[None]).argmin(1)
        new = np.array([ys[assign == i].mean() if (assign == i).any() else centres[i] for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return [[d for d, a in zip(band, assign) if a == i] for i in np.argsort(centres) if (assign == i).any()]


def read_digits(classes: np.ndarray, confidence: np.ndarray, min_area: int = MIN_DIGIT_AREA,
                min_confidence: float = MIN_DIGIT_CONFIDENCE) -> list[dict]:
    """Finds the digits in a class map, left to right.

    Digit pixels are grouped into 8-connected blobs; each digit class holding a large enough part
    of a blob (``min_area`` pixels and :data:`MINORITY_SHARE` of the blob's main class) is one digit,
    unless the net is unsure of it (mean confidence below ``min_confidence``: a speck, not a digit; but a
    large blob of one class down to :data:`UNSURE_CONFIDENCE` is read beside a sure digit of its height) or
    its box is no digit's (shorter than :data:`MIN_DIGIT_HEIGHT`, taller than :data:`MAX_DIGIT_HEIGHT`,
    or wider than :data:`MAX_DIGIT_ASPECT` times its height: a ruled line), or it lies in the same rows and
    columns as a larger digit of its blob (:func:`_part_of_another`). A digit reaching across two close rows is
    two digits of one class touching, and so is one far wider than its line's digits are tall; two digits of one
    class side by side or one above the other that together have one digit's shape are its pieces
    (:mod:`segapp.split`). ``classes`` is at the net's scale, where digits are about 20 px tall.

    Returns:
        Dicts with ``digit``, ``area`` (pixels), ``confidence`` (mean softmax probability over the
        digit's pixels) and ``bbox`` ([x0, y0, x1, y1], inclusive-exclusive), sorted by x centre.
    """
    fg = (classes != BACKGROUND).astype(np.uint8)
    n, labels, blob, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return []
    # One pass over the digit pixels, grouped by (blob, class): a fixed number of array operations per image
    # rather than per blob (`segapp predict` reads thousands of small images, in Python threads sharing the GIL).
    ys, xs = np.nonzero(fg)
    key = labels[ys, xs].astype(np.int64) * NUM_DIGITS + classes[ys, xs]
    counts = np.bincount(key, minlength=n * NUM_DIGITS).reshape(n, NUM_DIGITS)
    keep = counts >= np.maximum(min_area, MINORITY_SHARE * counts.max(1, keepdims=True))
    # a blob too narrow to hold two digits side by side is one digit: a second class in it is part of its stroke
    single = blob[:, cv2.CC_STAT_WIDTH] < ONE_DIGIT_ASPECT * blob[:, cv2.CC_STAT_HEIGHT]
    keep[single] &= counts[single] == counts[single].max(1, keepdims=True)
    wanted = np.flatnonzero(keep.ravel())  # (blob, class) keys that are digits, blob-major as before
    if len(wanted) == 0:
        return []
    order = np.argsort(key, kind="stable")
    key, ys, xs, conf = key[order], ys[order], xs[order], confidence[ys[order], xs[order]]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    run = np.searchsorted(key[starts], wanted)  # each wanted key's run of pixels ...
    at = starts[run]  # ... and where it begins
    stats = [np.minimum.reduceat(xs, starts), np.minimum.reduceat(ys, starts),
             np.maximum.reduceat(xs, starts), np.maximum.reduceat(ys, starts)]
    found, unsure = [], []
    for k, s0, r in zip(wanted.tolist(), at.tolist(), run.tolist()):
        area = int(counts.flat[k])
        conf_mean = float(conf[s0 : s0 + area].mean())
        box = [int(stats[0][r]), int(stats[1][r]), int(stats[2][r]) + 1, int(stats[3][r]) + 1]
        w, h = box[2] - box[0], box[3] - box[1]
        if not MIN_DIGIT_HEIGHT <= h <= MAX_DIGIT_HEIGHT or w > MAX_DIGIT_ASPECT * h:
            continue
        d = {"digit": k % NUM_DIGITS, "area": area, "confidence": round(conf_mean, 4), "bbox": box,
             "_x": float(xs[s0 : s0 + area].mean()), "_blob": k // NUM_DIGITS, "_at": s0}
        if conf_mean >= min_confidence:
            found.append(d)
        elif conf_mean >= UNSURE_CONFIDENCE and area >= UNSURE_AREA and area == counts[k // NUM_DIGITS].max():
            unsure.append(d)
    found += [u for u in unsure if any(_beside(u, f) for f in found)]
    by_blob: dict[int, list[dict]] = {}
    for f in found:
        by_blob.setdefault(f["_blob"], []).append(f)
    # only blobs read as two or more digits are compared (a page of specks or digits stays linear)
    found = [f for f in found if len(by_blob[f["_blob"]]) == 1
             or not _part_of_another(f, by_blob[f["_blob"]], blob[f["_blob"], cv2.CC_STAT_HEIGHT])]
    found = split_stacked(split_beside(found, ys, xs, conf), ys, xs, conf)
    found = join_stacked(join_beside(found, ys, xs, conf), ys, xs, conf)
    for f in found:
        f.pop("_blob"), f.pop("_at"), f.pop("_pix", None)
    found.sort(key=lambda f: f.pop("_x"))
    return found


def _part_of_another(f: dict, same_blob: list[dict], blob_height: int) -> bool:
    """Whether a digit read in a blob is a part of a larger one read in the same blob (``same_blob``): the same
    rows, and centres less than :data:`SAME_COLUMNS` blob heights apart. Touching digits sit side by side; a wide
    italic 6 the net coloured as 0 at its left and 6 at its right, or a footed 1 whose foot it read as a 2, is one
    digit."""
    return any(g["area"] > f["area"] and abs(g["_x"] - f["_x"]) < SAME_COLUMNS * blob_height and share_rows(f, g)
               for g in same_blob)


def _beside(unsure: dict, sure: dict) -> bool:
    """Whether an unsure digit sits in the rows of a sure one and is about its height (:data:`UNSURE_HEIGHT`)."""
    ratio = (unsure["bbox"][3] - unsure["bbox"][1]) / (sure["bbox"][3] - sure["bbox"][1])
    return UNSURE_HEIGHT[0] <= ratio <= UNSURE_HEIGHT[1] and share_rows(unsure, sure)


def share_rows(a: dict, b: dict) -> bool:
    """Whether two boxes share :data:`ROW_SHARE` of the rows of the shorter (not stacked, as close rows' digits are;
    one band, as a word's letters are: :func:`segapp.words.words`)."""
    ay0, ay1, by0, by1 = a["bbox"][1], a["bbox"][3], b["bbox"][1], b["bbox"][3]
    return min(ay1, by1) - max(ay0, by0) >= ROW_SHARE * min(ay1 - ay0, by1 - by0)



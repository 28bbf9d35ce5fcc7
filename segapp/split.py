"""Two digits of one class that touch: the net colours them as one blob of one class, and the reading splits it.

:func:`segapp.render.read_digits` finds digits as (blob, class) runs of pixels; where two digits of the same class
touch (a 4 written just above a 4, "00" or "77" written close), their pixels are one run and would read as one
digit. These functions split such a run by its shape: one digit spanning two rows' middles (:func:`split_stacked`),
or one digit twice as wide as the digits of its line are tall (:func:`split_beside`). The opposite also happens: a
digit written in two strokes that do not meet (a 4 whose stem stands apart from its arm and bar) is two runs of one
class side by side, together one digit's shape, and :func:`join_beside` reads them as one; a 5 whose top bar stands
apart is two runs one above the other, and :func:`join_stacked` reads them as one.
"""

from __future__ import annotations

import numpy as np

# of the median digit height: shorter digits are pieces (a split stroke) and stand for no row
PIECE = 0.6
ROW_SHARE = 0.5  # of the shorter box's rows: two boxes sharing this many sit side by side in one band
# Close rows: a digit that reaches from the middle of a digit in one row to the middle of a digit wholly below it
# (and is this many times their height) is two digits of one class touching one above the other (a 4 above a 4).
STACKED = 1.5
# Close rows, offset: a digit at least TWO_ROWS times as tall as the other digits, with one of them beside its top
# (that digit's middle within ROW_REACH of its height from its top) and one beside its bottom, is two digits of close
# rows touching, whatever classes the net gave them (their touch made one blob of one class: a 7 over a 6 read as one
# 6). Its parts are read again (segapp.reread), since the class was the whole blob's.
TWO_ROWS = 1.8
ROW_REACH = 0.35
# Side by side: a digit at least this many times as wide as its line's digits are tall (and as it is tall) is two
# digits of one class touching ("00", "22", "77"). One digit reaches ~1.2 (a wide 0, a 7 slanted at 0.5).
WIDE = 1.45
MIDDLE = (0.3, 0.7)  # of a wide digit's width: where it is cut (at its column with the fewest pixels)
TALL_PARTS = 0.7  # each side of the cut is about as tall as the other (the far end of a crossed 7's bars is not)
# Pieces of one digit: two runs of one class in the same rows, at most JOIN_GAP of the taller's height apart, whose
# joint box is at most JOIN_ASPECT as wide as tall (two MNIST-wide digits side by side are ~1.4 or more), at least one
# of them not a bare stroke (PIECE_WIDTH of its height wide), the shorter at most PIECE_HEIGHT of the taller (a 4's
# arm ends above its stem's foot; two narrow digits written close are as tall as each other). Two 1s are joined only
# as a 4's arm and stem (:func:`_one_digit`): two 1s written close are two bare strokes.
JOIN_GAP = 0.3
JOIN_ASPECT = 1.05
PIECE_WIDTH = 0.3  # a hairline hand's arm without its bar is 0.33-0.35 (0.4 left such 4s read "1 1")
PIECE_HEIGHT = 0.85
# A 4's stem beside its arm (:func:`_is_stem`), in the arm's heights: its foot at least STEM_FOOT below the arm's
# bottom, and either the whole stem (its foot STEM_LONG below) or the stem's lower part, whose top went with the arm
# and bar (the piece begins STEM_TOP below the arm's top). Two 1s written side by side begin within 0.4 of each other's
# tops (a baseline a little off, one 1 a little shorter).
STEM_FOOT = 0.1
STEM_LONG = 0.5
STEM_TOP = 0.45
# Pieces of one digit one above the other: two runs of one class sharing STACK_COLUMNS of the narrower's columns, at
# most STACK_GAP of their joint height apart, together at most STACK_TALL of the height of the digits in their rows
# and each at most STACK_PIECE of it: a 5 whose top bar was written apart, a 4 whose stem's foot was coloured apart.
# Two digits of one class in close rows are each as tall as the digits beside them.
STACK_COLUMNS = 0.5
STACK_GAP = 0.15
STACK_TALL = 1.3
STACK_PIECE = 0.8


def _pixels(f: dict, ys: np.ndarray, xs: np.ndarray, conf: np.ndarray):
    """A digit's own (ys, xs, conf): its run in the sorted pixel arrays, or the arrays a split gave it."""
    if "_pix" in f:
        return f["_pix"]
    run = slice(f["_at"], f["_at"] + f["area"])
    return ys[run], xs[run], conf[run]


def _part(f: dict, py: np.ndarray, px: np.ndarray, pc: np.ndarray) -> dict:
    return {**f, "area": int(len(py)), "confidence": round(float(pc.mean()), 4), "_x": float(px.mean()),
            "bbox": [int(px.min()), int(py.min()), int(px.max()) + 1, int(py.max()) + 1], "_pix": (py, px, pc)}


def _halves(f: dict, ys: np.ndarray, xs: np.ndarray, conf: np.ndarray, lo: int, hi: int) -> list[dict]:
    """A digit cut at its row with the fewest pixels between ``lo`` and ``hi`` rows below its top into an upper and
    a lower part."""
    fy, fx, fc = _pixels(f, ys, xs, conf)
    y0 = f["bbox"][1]
    cut = y0 + lo + int(np.argmin(np.bincount(fy - y0, minlength=f["bbox"][3] - y0)[lo:hi]))
    return [_part(f, fy[p], fx[p], fc[p]) for p in (fy < cut, fy >= cut)]


def _across_rows(i: int, box: np.ndarray, h: np.ndarray, full: np.ndarray) -> bool:
    """Whether digit ``i`` is :data:`TWO_ROWS` times as tall as the other full digits, with one of them beside its
    top and one beside its bottom (:data:`ROW_REACH`)."""
    others = full.copy()
    others[i] = False
    if others.sum() < 2 or h[i] < TWO_ROWS * float(np.median(h[others])):
        return False
    top, bottom, mid = box[:, 1], box[:, 3], (box[:, 1] + box[:, 3]) / 2
    beside = others & (bottom > top[i]) & (top < bottom[i])
    return bool((beside & (mid <= top[i] + ROW_REACH * h[i])).any()
                and (beside & (mid >= bottom[i] - ROW_REACH * h[i])).any())


def _boxes(found: list[dict]):
    box = np.array([f["bbox"] for f in found], float)  # (n, 4): x0, y0, x1, y1
    h = box[:, 3] - box[:, 1]
    return box, h, h >= PIECE * np.median(h)


def split_stacked(found: list[dict], ys: np.ndarray, xs: np.ndarray, conf: np.ndarray) -> list[dict]:
    """Splits each digit that spans two rows (see :data:`STACKED`) at its narrowest row between the two rows'
    middles into an upper and a lower digit of the same class. ``ys``, ``xs``, ``conf``: the digit pixels sorted
    as in :func:`segapp.render.read_digits` (see :func:`_pixels`). Each digit costs one vectorised pass over the
    others' boxes: a page of 400 digits is read in about 55 ms."""
    if len(found) < 3:
        return found
    box, h, full = _boxes(found)
    top, bottom = box[:, 1], box[:, 3]
    mid = (top + bottom) / 2
    out = []
    for i, f in enumerate(found):
        inside = full & (STACKED * h <= h[i]) & (mid >= top[i]) & (mid <= bottom[i])
        inside[i] = False
        rows = np.flatnonzero(inside)  # the digits whose middles it spans
        upper, lower = (rows[np.argmin(bottom[rows])], rows[np.argmax(top[rows])]) if len(rows) >= 2 else (0, 0)
        if len(rows) < 2 or bottom[upper] > top[lower]:  # no digit wholly above another in its rows ...
            if _across_rows(i, box, h, full):  # ... but two rows beside it: two digits, whatever their classes
                parts = _halves(f, ys, xs, conf, int(MIDDLE[0] * h[i]), int(MIDDLE[1] * h[i]) + 1)
                med = float(np.median(h[full]))
                if all(p["bbox"][3] - p["bbox"][1] >= PIECE * med for p in parts):
                    out += [{**p, "_split": True} for p in parts]  # to be read again (segapp.reread)
                    continue
            out.append(f)
            continue
        y0 = int(top[i])  # both parts keep a row of pixels
        out += _halves(f, ys, xs, conf, max(int(mid[upper]) - y0, 1), int(mid[lower]) - y0 + 1)
    return out


def split_beside(found: list[dict], ys: np.ndarray, xs: np.ndarray, conf: np.ndarray) -> list[dict]:
    """Splits each digit :data:`WIDE` times as wide as the other digits in its rows are tall (and as it is tall) at
    its column with the fewest pixels in the :data:`MIDDLE` of its width into a left and a right digit of its class,
    when both sides are about as tall (:data:`TALL_PARTS`). A digit with no full-height neighbour in its rows is
    left alone (nothing tells how wide one digit is there)."""
    if len(found) < 2 or all(x1 - x0 < WIDE * (y1 - y0) for x0, y0, x1, y1 in (f["bbox"] for f in found)):
        return found  # none is that much wider than tall: the usual case, at a few microseconds
    box, h, full = _boxes(found)
    top, bottom, w = box[:, 1], box[:, 3], box[:, 2] - box[:, 0]
    out = []
    for i, f in enumerate(found):
        line = full & _in_rows(box, top[i], bottom[i])
        line[i] = False
        if not line.any() or w[i] < WIDE * max(float(np.median(h[line])), h[i]):
            out.append(f)
            continue
        fy, fx, fc = _pixels(f, ys, xs, conf)
        x0 = int(box[i, 0])
        lo, hi = int(MIDDLE[0] * w[i]), int(MIDDLE[1] * w[i]) + 1
        cut = x0 + lo + int(np.argmin(np.bincount(fx - x0, minlength=int(w[i]))[lo:hi]))
        sides = (fx < cut, fx >= cut)
        tall = [np.ptp(fy[p]) + 1 for p in sides]
        if min(tall) < TALL_PARTS * max(tall):  # one side is a bar or a tail, not a digit
            out.append(f)
            continue
        out += [_part(f, fy[p], fx[p], fc[p]) for p in sides]
    return out


def join_beside(found: list[dict], ys: np.ndarray, xs: np.ndarray, conf: np.ndarray) -> list[dict]:
    """Joins neighbours that are pieces of one digit (:func:`_one_digit`, :func:`_pieces`), left to right: a
    two-stroke 4 read as "4 4", "4 1", "1 4" or "1 1" is one 4. ``found`` in any order. A digit joined from
    pieces of other classes names them in ``_joined``: the mask gives those pieces its class."""
    if len(found) < 2:
        return found
    box = np.array([f["bbox"] for f in found], float)  # (n, 4): x0, y0, x1, y1
    if not (_one_box(box[:, None], box[None]) & ~np.eye(len(found), dtype=bool)).any():
        return found  # no two digits in one line make one digit's box: the usual case, in one vectorised pass
    out: list[dict] = []
    for f in sorted(found, key=lambda f: f["bbox"][0]):
        k, digit = next(((k, d) for k in reversed(range(len(out)))
                         if (d := _one_digit(out[k], f)) is not None and _pieces(out[k], f)), (None, None))
        if k is None:
            out.append(f)
            continue
        out[k] = _join(out[k], f, digit, ys, xs, conf)
    return out


def join_stacked(found: list[dict], ys: np.ndarray, xs: np.ndarray, conf: np.ndarray) -> list[dict]:
    """Joins two pieces of one digit, one above the other, in a line of other digits (see :data:`STACK_COLUMNS`):
    "0 5 1" read as "0 5 5 1" where the writer lifted the pen off a 5's top bar (held hands, analysis seeds: 4 such
    numbers in 1800). A digit with no other beside it is left as read: nothing tells one digit's height there."""
    if len(found) < 3 or len({f["digit"] for f in found}) == len(found):
        return found  # no two digits of one class: the usual case, at a microsecond
    out = list(found)
    while len(out) >= 3 and (pair := _stacked_pair(out)) is not None:
        i, j = pair
        out = [f for k, f in enumerate(out) if k not in pair] + [_join(out[i], out[j], out[i]["digit"], ys, xs, conf)]
    return out


def _stacked_pair(found: list[dict]) -> tuple[int, int] | None:
    """The first (upper, lower) pair of :func:`join_stacked`'s pieces among ``found``, or None. Candidates in one
    vectorised pass (class, columns, gap); the height beside them only for those (a page of 400 digits has few)."""
    box = np.array([f["bbox"] for f in found], float)  # (n, 4): x0, y0, x1, y1
    cls = np.array([f["digit"] for f in found])
    a, b = box[:, None], box[None]  # a above b
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    top, bottom = np.minimum(a[..., 1], b[..., 1]), np.maximum(a[..., 3], b[..., 3])
    cols = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    near = (cls[:, None] == cls[None]) & (a[..., 1] < b[..., 1]) & (b[..., 1] - a[..., 3] <= STACK_GAP * (bottom - top))
    for i, j in zip(*np.nonzero(near & (cols >= STACK_COLUMNS * np.minimum(w[:, None], w[None])))):
        beside = _in_rows(box, top[i, j], bottom[i, j])
        beside[[i, j]] = False
        if beside.any():
            ref = float(np.median(h[beside]))
            if bottom[i, j] - top[i, j] <= STACK_TALL * ref and max(h[i], h[j]) <= STACK_PIECE * ref:
                return int(i), int(j)
    return None


def _in_rows(box: np.ndarray, y0: float, y1: float) -> np.ndarray:
    """(n,) bool: which of the boxes (n, 4) share :data:`ROW_SHARE` of the rows of the shorter with rows
    ``y0``..``y1``: the same line (as :func:`segapp.render.share_rows`)."""
    h = box[:, 3] - box[:, 1]
    return np.minimum(box[:, 3], y1) - np.maximum(box[:, 1], y0) >= ROW_SHARE * np.minimum(h, y1 - y0)


def _join(g: dict, f: dict, digit: int, ys: np.ndarray, xs: np.ndarray, conf: np.ndarray) -> dict:
    """Two digits' pixels as one ``digit``; the classes of pieces that were not that digit go in ``_joined``."""
    parts = [_pixels(g, ys, xs, conf), _pixels(f, ys, xs, conf)]
    joined = _part(g, *(np.concatenate([p[i] for p in parts]) for i in range(3)))
    other = {c for c in (g["digit"], f["digit"], *g.get("_joined", ()), *f.get("_joined", ())) if c != digit}
    return {**joined, "digit": digit, **({"_joined": tuple(sorted(other))} if other else {})}


def _one_digit(left: dict, right: dict) -> int | None:
    """The digit two neighbours' classes can be pieces of, or None: their class when the same (not 1s: two 1s
    written close are two bare strokes), or a 4 whose arm (with its bar) and, right of it, stem are coloured as 4s
    or 1s (alone, the stem is a 1's stroke and the arm often read as one). A 4 and a 1 are its pieces when the 1
    is taller or is its stem (:func:`_is_stem`); two 1s only when the left one is wider than a bare stroke and the
    right one is its stem: a taller 1 beside a slanted one was read as a 4 ("1 1 1" hand-written, 15 of 2700)."""
    pair = (left["digit"], right["digit"])
    if pair[0] == pair[1] != 1:
        return pair[0]
    (lx0, ly0, lx1, ly1), (_, ry0, _, ry1) = left["bbox"], right["bbox"]
    if pair in ((4, 1), (1, 4)) and (ly1 - ly0 < ry1 - ry0 or _is_stem(left, right)):
        return 4
    if pair == (1, 1) and lx1 - lx0 >= PIECE_WIDTH * (ly1 - ly0) and _is_stem(left, right):
        return 4
    return None


def _is_stem(arm: dict, stem: dict) -> bool:
    """Whether ``stem`` is where a 4's stem stands beside ``arm`` (see :data:`STEM_FOOT`): below it, the whole stem
    or its lower part (a hairline hand's 4, whose stem the net coloured in two pieces, the upper one with the bar)."""
    (_, ay0, _, ay1), (_, sy0, _, sy1) = arm["bbox"], stem["bbox"]
    h, below = ay1 - ay0, sy1 - ay1
    return below >= STEM_FOOT * h and (sy0 - ay0 >= STEM_TOP * h or below >= STEM_LONG * h)


def _one_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether boxes ``a`` and ``b`` (x0, y0, x1, y1 in the last axis; broadcast) share half the rows of the shorter
    and their joint box is at most :data:`JOIN_ASPECT` as wide as tall: the first test of two pieces of one digit."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    rows = lo[..., 3] - hi[..., 1] >= 0.5 * np.minimum(a[..., 3] - a[..., 1], b[..., 3] - b[..., 1])
    return rows & (hi[..., 2] - lo[..., 0] <= JOIN_ASPECT * (hi[..., 3] - lo[..., 1]))


def _pieces(a: dict, b: dict) -> bool:
    """Whether two digits' boxes are two pieces of one digit (see :func:`join_beside`)."""
    if not _one_box(np.array(a["bbox"], float), np.array(b["bbox"], float)):
        return False
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a["bbox"], b["bbox"]
    ha, hb = ay1 - ay0, by1 - by0
    gap = max(ax0, bx0) - min(ax1, bx1)
    return (gap <= JOIN_GAP * max(ha, hb) and max((ax1 - ax0) / ha, (bx1 - bx0) / hb) >= PIECE_WIDTH
            and min(ha, hb) <= PIECE_HEIGHT * max(ha, hb))

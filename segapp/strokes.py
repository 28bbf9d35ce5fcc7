"""Other writers from MNIST's own digits: re-drawing a digit's strokes with another pen, and style strokes.

A net trained on MNIST learns MNIST's pens as much as its shapes: round ballpoint strokes of one
width and soft edges. Real people write with felt tips, pencils, chisel markers and fountain pens,
press unevenly, close their 4s and cross their 7s. Each function here keeps the *shape* one MNIST
training writer drew (so measuring other people's handwriting stays honest) and changes how it was
written: :func:`repen` follows the digit's skeleton with a new nib, :func:`restyle` adds the strokes
other styles put on a 1, a 4 or a 7, :func:`pointed` closes a 4 into a triangle.
Patches are float32 in [0, 1], white ink on black, cropped.
"""

from __future__ import annotations

import cv2
import numpy as np

NIBS = ("round", "chisel", "pencil")  # a felt tip or ballpoint, a flat calligraphy/marker nib, a pencil


def thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image to one-pixel-wide strokes (its skeleton), vectorised.

    Each pass removes, all at once, the boundary pixels whose removal keeps the strokes connected;
    MNIST strokes are a few pixels wide, so a digit takes a handful of passes.
    """
    img = np.pad(binary.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p3, p4, p5 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:]
            p6, p7, p8, p9 = img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(r.astype(np.int16) for r in ring[:8])
            transitions = sum(((ring[k] == 0) & (ring[k + 1] == 1)).astype(np.int16) for k in range(8))
            if step == 0:
                side = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                side = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            drop = (c == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if drop.any():
                c[drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def _nib(kind: str, width: float, rng: np.random.Generator) -> np.ndarray:
    """The pen's footprint as a uint8 structuring element, ``width`` px across at its widest."""
    size = max(1, int(round(width)))
    if kind != "chisel" or size < 3:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    k = np.zeros((size, size), np.uint8)
    angle = rng.uniform(0, np.pi)  # a flat nib held at one angle: thick and thin strokes by direction
    half = (size - 1) / 2
    dx, dy = np.cos(angle) * half, np.sin(angle) * half
    # hairlines a quarter of the nib wide, or (half the time) one pixel: a broad nib's or a fountain pen's
    # pressure contrast, whose upstrokes fade to faint grey once resampled
    hairline = max(1, size // 4) if rng.random() < 0.5 else 1
    cv2.line(k, (int(round(half - dx)), int(round(half - dy))), (int(round(half + dx)), int(round(half + dy))), 1,
             hairline)
    return k


def repen(d: np.ndarray, rng: np.random.Generator, lift: float = 0.0, swell: float = 0.0,
          width_scale: float = 1.0) -> np.ndarray:
    """Re-draws a cropped digit along its skeleton with another pen: width, nib shape and pressure.

    Works at twice the resolution (a skeleton of a 20 px digit is coarse) and comes back by area
    averaging, so the new strokes have anti-aliased edges like the originals. Widths run from a
    fine liner (4% of the digit height) to a marker (22%); MNIST's own are about 10-15%. With
    probability ``lift`` the pen also leaves the paper once (:func:`_lift`); with probability ``swell``
    it is a pressure pen (:func:`_swell`). ``width_scale`` scales the width: a lowercase letter drawn by the pen
    of its line's digits has the digits' width, not a share of its own smaller height.
    """
    big = cv2.resize(d, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    skel = thin(big > 0.45)
    if skel.sum() < 6:
        return d
    kind = NIBS[int(rng.choice(len(NIBS), p=[0.45, 0.35, 0.2]))]
    height = big.shape[0]
    width = width_scale * height * (rng.uniform(0.03, 0.08) if kind == "pencil" else
                                    float(np.exp(rng.uniform(np.log(0.04), np.log(0.22)))))
    if rng.random() < lift:
        skel = _lift(skel, width, height, rng)
    pad = int(width) + 2
    skel = np.pad(skel, pad).astype(np.uint8)
    ink = cv2.dilate(skel, _nib(kind, max(1.0, width), rng)).astype(np.float32)
    if swell and kind != "pencil" and width >= 4 and rng.random() < swell:
        ink = _swell(ink, skel, width, rng)
    ink = cv2.GaussianBlur(ink, (0, 0), 0.6)
    if kind == "pencil" or rng.random() < 0.3:  # uneven pressure along the stroke (graphite, a drying pen)
        h, w = ink.shape
        field = cv2.resize(rng.uniform(0.0, 1.0, (3, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        ink *= np.clip(rng.uniform(0.45, 0.8) + 0.5 * field, 0.3, 1.0)
        if kind == "pencil":  # graphite grain
            ink *= rng.uniform(0.75, 1.0, ink.shape).astype(np.float32)
    small = cv2.resize(ink, (ink.shape[1] // 2, ink.shape[0] // 2), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0.02)
    if len(ys) == 0:
        return d
    return np.clip(small[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], 0.0, 1.0)


def _swell(ink: np.ndarray, skel: np.ndarray, width: float, rng: np.random.Generator) -> np.ndarray:
    """A pressure pen (a pointed nib, a brush, school cursive): each stroke swells to the full nib where pressed and
    thins to a hairline (the skeleton, one pixel at twice the scale) elsewhere, the pressure a smooth field along
    the skeleton, spread across the stroke by the nib. A stroke may thus be thick for half its length and a
    hairline for the rest, as a school 4's stem above and below its bar: once resampled the hairline is faint grey
    beside full ink, and a net that only saw even strokes read the thick part alone ("4" -> "1 1"). The field is
    stretched to span 0-1 along the skeleton, so every digit so drawn has both a full nib and a hairline."""
    h, w = ink.shape
    cells = int(rng.integers(2, 4))
    field = cv2.resize(rng.uniform(0.0, 1.0, (cells, cells)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    on = field[skel > 0]
    field = (field - on.min()) / max(float(on.max() - on.min()), 1e-6)
    press = np.clip((field - rng.uniform(0.3, 0.6)) / 0.15, 0.0, 1.0) * skel  # 0: hairline, 1: full nib
    k = int(width) + 2  # each ink pixel takes the pressure of the skeleton it was drawn from (the nib's reach)
    press = cv2.dilate(press, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return np.maximum(skel.astype(np.float32), ink * press)


def _lift(skel: np.ndarray, width: float, height: int, rng: np.random.Generator) -> np.ndarray:
    """A gap where the pen left the paper: a short stretch of the skeleton removed, visible after the nib
    (2-8% of the digit height plus the pen's own width): an open 0, 6, 8 or 9 loop, a faded stroke. A cut
    that would split the digit into two pieces is not made (each piece would be read as a digit of its
    own); a cut at a stroke's end only shortens it."""
    ys, xs = np.nonzero(skel)
    pieces = cv2.connectedComponents(skel.astype(np.uint8), connectivity=8)[0]
    for _ in range(4):  # a few tries at a cut that keeps the digit in one piece
        i = int(rng.integers(len(ys)))
        r = width / 2 + height * rng.uniform(0.02, 0.08) / 2
        near = (ys - ys[i]) ** 2 + (xs - xs[i]) ** 2 <= r * r
        cut = skel.copy()
        cut[ys[near], xs[near]] = False
        if cut.sum() >= 6 and cv2.connectedComponents(cut.astype(np.uint8), connectivity=8)[0] <= pieces:
            return cut
    return skel


def _stroke_width(d: np.ndarray, height: int, share: float) -> int:
    """The digit's own stroke width in px (ink area over height, ``share`` of it for a bar or flag)."""
    return max(1, int(round((d > 0.5).sum() / max(height, 1) / share)))


def restyle(d: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """Adds the strokes other writing styles put on an MNIST 1 (a flag, a foot), 4 (a closed top) or 7 (a bar).

    Many people (and every printed font) write 1 with a flag and often a foot, 7 with a bar and 4
    closed; MNIST's American-style writers rarely do, so a net trained on it reads a footed 1 as a 2.
    The strokes are drawn onto the MNIST digit itself at its own stroke width: the shape stays one
    MNIST writer's, only the style changes. ``d`` is the cropped digit, float in [0, 1].
    """
    pad = 8
    d = np.pad(d, pad)
    ys, xs = np.nonzero(d > 0.5)
    if len(ys) < 5:
        return d
    h = ys.max() - ys.min() + 1
    top, bottom = ys.min(), ys.max()
    x_top, x_bot = xs[ys <= top + 1].mean(), xs[ys >= bottom - 1].mean()
    width = _stroke_width(d, h, 1.6 if label == 1 else 2.5)  # of the strokes added, at the digit's own width
    lines = []
    if label == 1:
        if rng.random() < 0.8:  # flag: down-left from the top, from a serif to a continental lead-in half as long
            lines.append(((x_top, top), (x_top - rng.uniform(0.2, 0.5) * h, top + rng.uniform(0.1, 0.45) * h)))
        if rng.random() < 0.5:  # foot
            half = rng.uniform(0.2, 0.35) * h
            lines.append(((x_bot - half, bottom), (x_bot + half, bottom)))
    elif label == 7:
        y = top + rng.uniform(0.45, 0.6) * h
        row = np.nonzero(d[int(y)] > 0.5)[0]
        if len(row):
            x = row.mean()
            half = rng.uniform(0.15, 0.3) * h
            lines.append(((x - half, y), (x + half, y)))
    elif label == 4:  # closed top: join the tops of the two arms where an open 4 leaves a gap
        upper = d[top : top + max(2, h // 3)] > 0.5
        cols = np.flatnonzero(upper.any(0))
        gaps = np.flatnonzero(np.diff(cols) > 1)
        if len(gaps):
            left, right = cols[: gaps[0] + 1], cols[gaps[0] + 1 :]
            ly = top + np.flatnonzero(upper[:, left].any(1))[0]
            ry = top + np.flatnonzero(upper[:, right].any(1))[0]
            lines.append(((left.mean(), ly), (right.mean(), ry)))
            # A closed 4 differs from a square-topped 9 only by its bar crossing the stem; most MNIST 4s
            # end the bar at the stem, so closing them alone teaches the net that a square 9 is a 4.
            y0 = top + int(0.3 * h)
            band = d[y0 : top + int(0.85 * h)] > 0.5
            y = int(np.argmax(band.sum(1)))  # the bar: the middle row with the most ink
            end = np.flatnonzero(band[y]).max()
            need = right.max() + width + rng.uniform(0.0, 0.25) * h  # from a stub one pen wide to a long bar
            if end < need:
                lines.append(((end, y0 + y), (need, y0 + y + rng.uniform(-0.04, 0.04) * h)))
    for (x0, y0), (x1, y1) in lines:
        cv2.line(d, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), 1.0, width, cv2.LINE_AA)
    ys, xs = np.nonzero(d > 0)
    return d[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def pointed(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 4 as print and many hands draw it: the left arm replaced by a diagonal from the stem's top down to the bar's
    left end, a closed triangle, the bar carried past the stem.

    MNIST's 4s are mostly open (two arms) or square; a net and a reader that never saw a small pointed triangle
    over a long stem read it as a 9's loop (4 -> 9 was the commonest confusion on other writers' digits). The bar
    always crosses the stem, by one pen width plus 5-25% of the height: a triangle whose bar ends at the stem is
    a 9. A 4 with no open top to find its arms by is left as it is.
    """
    d = np.pad(d, 8)
    ink = d > 0.5
    ys, xs = np.nonzero(ink)
    if len(ys) < 5:
        return d
    top = ys.min()
    h = ys.max() - top + 1
    upper = ink[top : top + max(2, h // 3)]
    cols = np.flatnonzero(upper.any(0))
    gaps = np.flatnonzero(np.diff(cols) > 1)
    if not len(gaps):
        return d
    right = cols[gaps[0] + 1 :]  # the stem's columns; the left arm is the part before the gap
    y0 = top + int(0.3 * h)
    by = y0 + int(np.argmax(ink[y0 : top + int(0.85 * h)].sum(1)))  # the bar: the middle row with the most ink
    row = np.flatnonzero(ink[by])
    width = _stroke_width(d, h, 2.5)
    out = d.copy()
    out[: by - width, : right.min() - 1] = 0.0  # the left arm, above the bar
    tip = top + int(np.flatnonzero(ink[top:, right].any(1))[0])
    lines = [((right.mean(), tip), (row.min(), by))]
    need = right.max() + width + rng.uniform(0.05, 0.25) * h
    if row.max() < need:
        lines.append(((row.max(), by), (need, by + rng.uniform(-0.04, 0.04) * h)))
    for (x0, y0_), (x1, y1) in lines:
        cv2.line(out, (int(round(x0)), int(round(y0_))), (int(round(x1)), int(round(y1))), 1.0, width, cv2.LINE_AA)
    ys, xs = np.nonzero(out > 0)
    return out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def open_loop(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 9 whose loop the writer never closed: the loop's left side cut below its middle.

    Many hands start a 9 at the top right, swing round to the left and go straight down the stem without
    coming back to close the loop; MNIST's writers close it, so a net trained on them reads such an open 9
    (an arc over a stem) as a 3 or a 1. The cut removes the loop's left wall over a few rows from its middle
    down (never its bottom stroke); a cut that would split the digit (or a 9 with no closed loop) leaves it as it is.
    """
    ink = d > 0.45
    h = d.shape[0]
    outside = np.pad(ink.astype(np.uint8), 1)
    cv2.floodFill(outside, None, (0, 0), 2)  # the background reachable from the border
    n, holes, stats, _ = cv2.connectedComponentsWithStats((outside[1:-1, 1:-1] == 0).astype(np.uint8), connectivity=4)
    if n < 2:
        return d
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    hy, hh = stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_HEIGHT]
    y = hy + int(round(hh * rng.uniform(0.4, 0.85)))  # below the loop's middle, above its bottom stroke
    half = max(1, int(round(h * rng.uniform(0.02, 0.05))))  # 3 rows on a 20 px digit, up to 5 on a 40 px one
    cut = d.copy()
    for r in range(max(0, y - half), min(h, y + half + 1)):
        hole = np.flatnonzero(holes[r] == k)
        if not len(hole):
            continue
        x = hole.min() - 1  # the loop's left wall: the run of ink just left of the hole, and only that
        while x >= 0 and ink[r, x]:
            x -= 1
        cut[r, max(x, 0) : hole.min() + 1] = 0.0  # with the anti-aliased pixel either side
    if cv2.connectedComponents((cut > 0.45).astype(np.uint8), connectivity=8)[0] > cv2.connectedComponents(
            ink.astype(np.uint8), connectivity=8)[0]:
        return d
    return cut


def hook(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 9 whose stem curls back to the left at its foot, as many hands end a descender.

    MNIST's 9s stand on a straight stem; other writers swing its foot left (a tail like a g's), and a net that
    never saw it reads the curled stem under a small loop as a 3 or as nothing. The rows below 50-70% of the
    digit's height slide left, more the lower they are (a quadratic curl ending 15-40% of the height to the left).
    """
    h = d.shape[0]
    reach = rng.uniform(0.15, 0.4) * h
    pad = int(np.ceil(reach)) + 2
    p = np.pad(d, ((0, 0), (pad, 0)))
    y0 = rng.uniform(0.5, 0.7) * h
    ys = np.arange(h, dtype=np.float32)
    shift = reach * np.clip((ys - y0) / max(h - 1 - y0, 1.0), 0.0, 1.0) ** 2  # px left, per row
    gx, gy = np.meshgrid(np.arange(p.shape[1], dtype=np.float32), ys)
    p = cv2.remap(p, gx + shift[:, None], gy, cv2.INTER_LINEAR, borderValue=0.0)
    cols = np.flatnonzero(p.max(0) > 0.02)
    return p[:, cols.min() : cols.max() + 1] if len(cols) else d

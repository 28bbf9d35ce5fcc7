"""The ink's connected parts, measured once for the digit height and the size groups.

A normalised image's ink falls into connected parts: the median height of those that may be digits is the digit
height (:func:`ink_height`), and parts of clearly different heights are read in separate passes
(:func:`size_groups`). Labelling the ink is most of the scale estimate's cost on a small canvas, so it is done once
(:func:`measure_ink`) and both answers are read from the same parts. :func:`segapp.scale.to_net_scale` resizes the
image by what is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .lines import edge_to_edge, without_page_lines

MIXED_RATIO = 2.5  # digit heights this far apart in one image are read in separate passes, each at its scale
MIN_INK_HEIGHT = 8  # px at analysis scale: shorter ink parts are specks (or digits too small to read)
FAINT_INK = 24  # the height is also measured on ink this faint (of 255), where a hairline joins a digit's pieces
FAINT_GAIN = 1.25  # ... and that measure is taken when it is this much taller and in fewer pieces
PIECE_BOX = 1.2  # of the taller parts' median height: a short part that fits one digit's box with a tall one is a piece


@dataclass
class SizeGroup:
    """Digits of one size in an image that holds several (a title and small print, a form's boxes)."""

    height: float  # px in the input
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 in the input, a margin of half a digit included
    others: np.ndarray  # (H, W) bool at the input's size: ink of the other groups, hidden from this pass


def ink_height(ink: np.ndarray) -> float | None:
    """Typical digit height (px) of a normalised image: the median height of its ink parts.

    Specks (small parts), ruled lines (very wide, flat parts) and frames are left out; after a first
    estimate, gaps of a tenth of a digit are closed so broken strokes count at full height.
    """
    return measure_ink(ink).height


@dataclass
class InkParts:
    """The ink of a normalised image, measured once for both the digit height and the size groups.

    ``labels``/``stats``/``kept`` describe the parts after closing (when a closing was done), which is what
    :func:`size_groups` splits; ``height`` is :func:`ink_height`'s answer; ``joined`` labels the ink down to
    :data:`FAINT_INK` as found, where a hairline joins the pieces of one digit.
    """

    height: float | None
    labels: np.ndarray | None = None
    stats: np.ndarray | None = None
    kept: np.ndarray | None = None
    joined: np.ndarray | None = None


def measure_ink(ink: np.ndarray) -> InkParts:
    """Ink parts and digit height of a normalised image, shared by :func:`ink_height` and :func:`size_groups`.

    Measured on the ink from a quarter of full intensity. A calligraphic hand's hairlines (a fountain pen's
    upstrokes, 1 px at 60-160 px digits) are fainter than that once anti-aliased, so its digits fall apart
    into their thick strokes and the median part is half a digit tall: read at twice the size it should be,
    the strokes are misread. When the ink down to :data:`FAINT_INK` holds fewer parts, :data:`FAINT_GAIN`
    times taller, that measure is taken (held hands, 60-160 px, analysis seed 77: 87% -> 88% read, mIoU
    0.960 -> 0.969; the dev sets and 997 of 1000 M2NIST test canvases measure the same). Where nothing
    reaches a quarter, there is no digit: faint ink alone is never measured (blank frames stay blank).

    A squared page whose lines reach a quarter too joins its digits to them: the median part was as tall as the
    page, or the whole grid, digits included, was dropped as a frame, and the digits were read at a fifth of
    their size or not at all (development grid pages). When a strong part runs from edge to edge
    (:func:`_runs_off`, :func:`~segapp.lines.edge_to_edge`), the ink is measured again without the page's lines
    (:func:`~segapp.lines.without_page_lines`).
    """
    binary = (ink >= 64).astype(np.uint8)
    best, strong = _measure_strong_or_faint(ink, binary)
    if (strong.height is not None and _runs_off(strong)) or edge_to_edge(binary):  # a page's lines, as strong
        clean = without_page_lines(ink, binary)  # as strokes, joined to the digits (or the grid dropped as a frame)
        if clean is not None:
            alt, _ = _measure_strong_or_faint(clean, (clean >= 64).astype(np.uint8))
            # measured without the lines: taken when two parts or more remain (a crop of 1s is all "lines", and a
            # lone part is as often the page's dust or a blot)
            if alt.height is not None and len(alt.kept) >= 2:
                return alt
    return best


def _measure_strong_or_faint(ink: np.ndarray, strong_ink: np.ndarray) -> tuple[InkParts, InkParts]:
    """(the measure :func:`measure_ink` takes, the strong ink's measure); ``strong_ink``: ``ink >= 64`` as uint8."""
    strong = _measure(strong_ink)
    if strong.height is None:
        return strong, strong
    faint = _measure((ink >= FAINT_INK).astype(np.uint8))
    whole = (faint.height is not None and 0 < len(faint.kept) < len(strong.kept)
             and faint.height >= FAINT_GAIN * strong.height  # the hairlines join a digit's pieces ...
             and not _runs_off(faint))  # ... unless the faint ink is a notebook's rules, joined to the digits
    best = faint if whole else strong
    best.joined = faint.joined  # size_groups asks the faint ink which parts a hairline joins, whichever measure won
    return best, strong


def _runs_off(parts: InkParts) -> bool:
    """Whether a kept part runs from edge to edge of the image (top to bottom or left to right): a ruled or
    squared page's faint lines, which join every digit on it into one part as tall as the page, not a hairline.

    Without this, numbers photographed on squared paper were measured as tall as the photo (the faint measure's
    one part) and read at a sixth of their size: nothing read (development grid pages, seeds 100-101: 10 of 200).
    """
    H, W = parts.labels.shape
    x, y, w, h = (parts.stats[parts.kept, i] for i in range(4))
    return bool((((y == 0) & (y + h == H)) | ((x == 0) & (x + w == W))).any())


def _measure(binary: np.ndarray) -> InkParts:
    """One binary ink image's parts and median height: two labelings (as found, then with broken strokes
    closed), so a small image is labelled twice, not four times (the labelings are most of the scale
    estimate's cost on an M2NIST canvas)."""
    labels, stats, kept = _parts(binary)
    first = _median_height(stats, kept)
    if first is None:
        return InkParts(None, joined=labels)
    k = int(round(first / 10))
    if k >= 2:
        closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        found = labels
        labels, stats, kept = _parts(closed)
        return InkParts(_median_height(stats, kept) or first, labels, stats, kept, found)
    return InkParts(first, labels, stats, kept, labels)


def _parts(binary: np.ndarray):
    """Connected ink parts that may be digits: (label map, stats of all parts, indices of the kept ones)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return labels, stats, np.zeros(0, int)
    w, h, area = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_AREA]
    H, W = binary.shape
    keep = (area >= max(4, 0.03 * area.max())) & (h >= MIN_INK_HEIGHT) & (w <= 8 * h)
    keep &= ~((h >= 0.9 * H) & (w >= 0.9 * W))  # a frame or the paper's edge
    return labels, stats, np.flatnonzero(keep) + 1


def _median_height(stats: np.ndarray, kept: np.ndarray) -> float | None:
    """Median height of the kept parts; None when there are none.

    Each part votes once, and of two middle votes the taller wins: a digit broken into pieces (the bar of
    a 5, a pen lifted) gives short votes, while tall merged parts (digits stacked by M2NIST's random
    offsets) are rarer. On 1000 M2NIST test canvases 3 leave the keep band this way (the lower middle: 31).
    ``sorted[n // 2]`` is ``np.percentile(h, 50, method="higher")`` without its overhead.
    """
    if len(kept) == 0:
        return None
    h = np.sort(stats[kept, cv2.CC_STAT_HEIGHT])
    return float(h[len(h) // 2])


def size_groups(ink: np.ndarray | InkParts, a: float, shape: tuple[int, int]) -> list[SizeGroup]:
    """Splits the ink parts into groups of clearly different heights (ratio > :data:`MIXED_RATIO`).

    Returns an empty list when the digits are of one size (the usual case). ``ink`` is the
    normalised analysis copy (or its :func:`measure_ink`), ``a`` its scale against the input of size ``shape``.
    """
    parts = ink if isinstance(ink, InkParts) else measure_ink(ink)
    if parts.height is None:
        return []
    labels, stats, kept = parts.labels, parts.stats, parts.kept  # broken strokes closed first, as in ink_height
    if len(kept) < 2:
        return []
    h = stats[kept, cv2.CC_STAT_HEIGHT].astype(float)
    order = np.argsort(h)
    cuts = [i + 1 for i in range(len(order) - 1) if h[order[i + 1]] > MIXED_RATIO * h[order[i]]]
    if not cuts:
        return []
    H, W = shape
    members = np.split(kept[order], cuts)
    # A short part beside or inside a tall one is a piece of it (a detached bar, a dot of ink), not a digit; so is
    # one a faint hairline joins to a tall one (a calligraphic 5's thick flag over its hairline stem), and one that
    # fits in one digit's box with a tall one (a calligraphic 2's thick base below its body): hidden from the tall
    # digits' pass, the piece would take the digit's shape with it (the 2 read as a 9).
    for g in range(len(members) - 1):
        taller = np.concatenate(members[g + 1 :])
        tall_joined = _joined_labels(parts, taller)
        box = PIECE_BOX * float(np.median(stats[taller, cv2.CC_STAT_HEIGHT]))
        members[g] = np.array([i for i in members[g] if not _touches(stats[i], stats[taller])
                               and not _fits(stats[i], stats[taller], box)
                               and not np.isin(_joined_labels(parts, [i]), tall_joined).any()], int)
    members = [m for m in members if len(m)]
    if len(members) < 2:
        return []
    full_labels = cv2.resize(labels.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST) if a != 1 else labels
    groups = []
    for ids in members:
        st = stats[ids]
        height = float(np.median(st[:, cv2.CC_STAT_HEIGHT])) / a
        m = 0.5 * height
        y0 = max(0, int(st[:, cv2.CC_STAT_TOP].min() / a - m))
        x0 = max(0, int(st[:, cv2.CC_STAT_LEFT].min() / a - m))
        y1 = min(H, int((st[:, cv2.CC_STAT_TOP] + st[:, cv2.CC_STAT_HEIGHT]).max() / a + m) + 1)
        x1 = min(W, int((st[:, cv2.CC_STAT_LEFT] + st[:, cv2.CC_STAT_WIDTH]).max() / a + m) + 1)
        others = np.isin(full_labels, np.setdiff1d(kept, ids))
        groups.append(SizeGroup(height, (y0, y1, x0, x1), others))
    return groups


def _joined_labels(parts: InkParts, ids) -> np.ndarray:
    """The faint-ink parts (``parts.joined``) that the kept parts ``ids`` lie in (0, no ink, left out)."""
    found = np.unique(parts.joined[np.isin(parts.labels, ids)])
    return found[found > 0]


def _fits(part: np.ndarray, others: np.ndarray, size: float) -> bool:
    """Whether a part and any one of the ``others`` fit together in a ``size`` x ``size`` box."""
    x, y, w, h = part[:4]
    ox, oy, ow, oh = others[:, 0], others[:, 1], others[:, 2], others[:, 3]
    tall = np.maximum(y + h, oy + oh) - np.minimum(y, oy)
    wide = np.maximum(x + w, ox + ow) - np.minimum(x, ox)
    return bool(((tall <= size) & (wide <= size)).any())


def _touches(part: np.ndarray, others: np.ndarray) -> bool:
    """Whether a part's box lies within a third of their height of any of the ``others``' boxes."""
    x, y, w, h = part[:4]
    ox, oy, ow, oh = others[:, 0], others[:, 1], others[:, 2], others[:, 3]
    m = oh / 3
    return bool(((x < ox + ow + m) & (x + w > ox - m) & (y < oy + oh + m) & (y + h > oy - m)).any())

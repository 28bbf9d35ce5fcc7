"""Postprocessing at the net's scale: class maps from logits, upsampling them to the input, and the rules that
keep the mask and the reading in step (smudges and specks are no digit; see :func:`settle`). A notebook's ruled
lines have rules of their own: :mod:`segapp.ruled`.

:class:`segapp.inference.Segmenter` calls these in :meth:`~segapp.inference.Segmenter.postprocess`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .classes import BACKGROUND, NUM_DIGITS, REVIEW_BELOW
from .render import ONE_DIGIT_ASPECT, Segmentation

BLOB_WIDTH = 0.85  # of a digit's height: ink this wide is a filled blob (a smudge), no pen stroke
PIECE_SHARE = 0.3  # of a digit's mask: its largest connected piece holds at least this much, unless it is specks
INK_SPAN = 0.6  # a digit whose ink spans this share of its height is a stroke, however thin (see _has_ink)
LEGIBLE_HEIGHT = 8  # px in the input: a "digit" shorter is a speck (see _has_ink). The smallest digits the
# benchmarks draw (10 px lone digits, wide MNIST digits at 0.7x) have boxes of 10 px and more; an M2NIST canvas's
# digit mostly hidden under another keeps 8 px in view (test canvas 993: 9 px would drop it)
STANDS_OUT = 2.0  # pixel-noise sigmas: an unsure digit's strongest ink stands this far above the paper around it
# (see stands_out). Its 90th percentile of ink: on development frames false reads reach 0.9-2.4 sigma (a margin's
# edge, a vignette, paper grain; a hot pixel 10.5), unsure digits read right 3.4 and up (development seeds 101-104),
# held hands photographed at 13-20 px 2.6 and up (analysis seeds 77-78); their medians overlapped (1.6 vs 2.0)
LEGIBLE_INK = 7  # px in the input: a digit's ink (its mask's rows) shorter than this is a speck (see _has_ink)
UNSURE_LEGIBLE = 10  # px in the input: an unsure digit shorter than this is a speck (see stands_out). Development
# sets (24 categories, seeds 101-102): no digit read right under 10 px, the unsure ones 11 px and up; the last false
# reads on development blank frames were 8-9 px (a hot pixel's cluster, a stretch under a rule)
STRIP_BYTES = 64 * 2**20  # memory of one strip of upsampled logits
VOTE_FLOOR = math.log(1e-4)  # a pixel's log-probability in a blob's vote (vote_blobs) is floored here: one pixel
# sure that a blob is not some class costs that class at most ~9 nats, a few hesitant pixels' worth, not a veto


def class_maps(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, h, w) logits -> (N, h, w) uint8 class indices and float32 softmax confidence of that class.

    The confidence is computed where a digit was found and is 1 on background, which nothing reads (digits are
    read from their own pixels): the softmax of the max logit is 1 / sum(exp(logits - max)), and skipping the
    ~94% of pixels that are background made this a fifth of what a full softmax cost `segapp predict`.
    """
    top, classes = logits.max(1)
    conf = torch.ones_like(top)
    n, y, x = (classes != BACKGROUND).nonzero(as_tuple=True)
    if len(n):
        conf[n, y, x] = 1.0 / torch.exp(logits[n, :, y, x] - top[n, y, x, None]).sum(1)
    return classes.to(torch.uint8).numpy(), conf.numpy()


def vote_blobs(logits: torch.Tensor, small: np.ndarray) -> np.ndarray:
    """One digit class per blob too narrow to hold two digits, chosen by all its pixels' probabilities (``small``,
    the (h, w) class map of (C, h, w) ``logits``, in place; returned).

    :func:`~segapp.render.read_digits` reads such a blob (:data:`~segapp.render.ONE_DIGIT_ASPECT`) as one digit,
    the class with most pixels. Where the net splits a digit between two classes (a script 2 whose loop it reads
    as a 9's and whose base as a 2's), counting argmax pixels ignores how sure each pixel is; summing each class's
    log-probability over the blob weighs the pixels that are sure of a class against those that hesitate.
    A blob of one class keeps it (a class that is nowhere the argmax cannot win the sum). Confidence is left as it
    was: the net's certainty about each pixel. Measured: docs/robustness.md, session 27.
    """
    fg = small != BACKGROUND
    if not _classes_touch(small, fg):  # most class maps (285 of 300 M2NIST canvases): no blob holds two classes
        return small
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.view(np.uint8), connectivity=8)
    ys, xs = np.nonzero(fg)
    blob = labels[ys, xs]
    counts = np.bincount(blob * NUM_DIGITS + small[ys, xs], minlength=n * NUM_DIGITS).reshape(n, NUM_DIGITS)
    mixed = ((counts > 0).sum(1) > 1) & (stats[:, cv2.CC_STAT_WIDTH] < ONE_DIGIT_ASPECT * stats[:, cv2.CC_STAT_HEIGHT])
    if not mixed.any():
        return small
    pick = mixed[blob]
    ys, xs, blob = ys[pick], xs[pick], blob[pick]
    logp = torch.log_softmax(logits[:, ys, xs].float(), 0)[:NUM_DIGITS].clamp_min_(VOTE_FLOOR)  # (10, pixels)
    votes = np.zeros((n, NUM_DIGITS))
    np.add.at(votes, blob, logp.T.numpy())
    small[ys, xs] = votes.argmax(1)[blob]
    return small


def _classes_touch(small: np.ndarray, fg: np.ndarray) -> bool:
    """Whether two 8-connected digit pixels of ``small`` differ in class (a quarter of the cost of labelling blobs)."""
    lo, hi, every = slice(None, -1), slice(1, None), slice(None)
    for here, there in (((every, hi), (every, lo)), ((hi, every), (lo, every)),  # beside, above
                        ((hi, hi), (lo, lo)), ((hi, lo), (lo, hi))):  # the two diagonals
        if (fg[here] & fg[there] & (small[here] != small[there])).any():
            return True
    return False


def certainty(seg: Segmentation) -> float:
    """Area-weighted mean confidence of the digits read (0 when none): which of two readings to believe."""
    area = sum(d["area"] for d in seg.digits)
    return sum(d["confidence"] * d["area"] for d in seg.digits) / area if area else 0.0


def upsample_classes(logits: torch.Tensor, small: np.ndarray, H: int, W: int) -> np.ndarray:
    """Class map at H x W from (C, h, w) logits: bilinear upsampling (align_corners=False), then argmax.

    Only the box around the digits found at net scale is computed (the rest is background), in
    strips of at most :data:`STRIP_BYTES`, so a 12-megapixel class map costs tens of megabytes.
    """
    out = np.full((H, W), BACKGROUND, np.uint8)
    ys, xs = np.nonzero(small != BACKGROUND)
    if len(ys) == 0:
        return out
    C, h, w = logits.shape
    sy, sx = h / H, w / W
    # input rows/cols whose source position lies within one net pixel of a digit pixel
    r0, r1 = max(0, int((ys.min() - 1) / sy)), min(H, math.ceil((ys.max() + 2) / sy))
    c0, c1 = max(0, int((xs.min() - 1) / sx)), min(W, math.ceil((xs.max() + 2) / sx))
    gx = ((torch.arange(c0, c1, dtype=torch.float32) + 0.5) * sx) * (2.0 / w) - 1.0
    rows = max(1, STRIP_BYTES // (4 * C * (c1 - c0)))
    src = logits[None]
    for y in range(r0, r1, rows):
        ye = min(r1, y + rows)
        gy = ((torch.arange(y, ye, dtype=torch.float32) + 0.5) * sy) * (2.0 / h) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        up = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[y:ye, c0:c1] = up[0].argmax(0).to(torch.uint8).numpy()
    return out


def digit_pixels(d: dict, small: np.ndarray) -> np.ndarray:
    """(box h, box w) bool: a digit's pixels in its box of the net-scale class map, with the pieces of other classes
    it was joined from (a 4 whose arm and stem the net coloured as 1s: once dropped here as a digit with no pixels)
    and, once read anew (:func:`segapp.reread.reread`), its former class, which its pixels still hold."""
    x0, y0, x1, y1 = d["bbox"]
    return np.isin(small[y0:y1, x0:x1], (d.get("_was", d["digit"]), d["digit"], *d.get("_joined", ())))


def stands_out(full: np.ndarray, d: dict, raw: np.ndarray, inverted: bool) -> bool:
    """Whether a digit (``d``, its box in input pixels, on the class map ``full``) is ink that stands out from the
    paper around it, or the net is sure of it.

    On a blank page the net, shown paper grain, a margin's soft edge or a vignette enlarged, colours a few pixels
    as an unsure digit (confidence 0.69-0.78 on development frames) whose pixels are no darker than the paper
    beside them. A digit under :data:`~segapp.classes.REVIEW_BELOW` confidence is kept when the 90th percentile of
    its pixels' ink stands :data:`STANDS_OUT` noise sigmas (1.4826 MADs of the paper around it) above the paper's
    median (``raw``: the input's gray image, ``inverted`` where its ink is dark on light): a stroke has a core of
    full ink however blurred its edges, grain does not. And it is :data:`UNSURE_LEGIBLE` px tall at least.
    """
    if d["confidence"] >= REVIEW_BELOW:
        return True
    x0, y0, x1, y1 = d["bbox"]
    if y1 - y0 < UNSURE_LEGIBLE:
        return False
    r = max(3, (y1 - y0) // 2)
    Y0, Y1, X0, X1 = max(0, y0 - r), y1 + r, max(0, x0 - r), x1 + r
    mine = full[Y0:Y1, X0:X1] == d["digit"]
    mine[: y0 - Y0], mine[y1 - Y0 :], mine[:, : x0 - X0], mine[:, x1 - X0 :] = False, False, False, False
    if not mine.any():
        return False
    ink = raw[Y0:Y1, X0:X1].astype(np.float32)
    ink = 255 - ink if inverted else ink
    inked = (full[Y0:Y1, X0:X1] != BACKGROUND).astype(np.uint8)
    paper = ink[cv2.dilate(inked, np.ones((5, 5), np.uint8)) == 0]
    if len(paper) < 16:
        return True  # no paper around it to compare with (a crop the digit fills)
    level = float(np.median(paper))
    noise = max(1.0, 1.4826 * float(np.median(np.abs(paper - level))))
    return float(np.percentile(ink[mine], 90)) - level >= STANDS_OUT * noise


def settle(full: np.ndarray, digits: list[dict], min_area: float) -> list[dict]:
    """Makes the mask and the reading agree (``full`` in place); returns the digits still read, with their areas.

    A digit left with under ``min_area`` input pixels of ink once the mask follows the strokes (a
    smudge, a shadow: colour without ink) is not read. A blob no digit is read from leaves the mask:
    nothing is coloured where nothing is read. Within a blob that is read, pixels of a class not read
    there (a stroke's end the net gave another class) take the class of the nearest read digit, so
    each connected stroke carries its digit's class.
    """
    digits = [d for d in digits if _has_ink(full, d, min_area)]
    fg = full != BACKGROUND
    if not fg.any():
        return digits
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    r0, c0 = rows[0], cols[0]
    view = full[r0 : rows[-1] + 1, c0 : cols[-1] + 1]
    read = np.zeros(view.shape, bool)
    for d in digits:
        x0, y0, x1, y1 = d["bbox"]
        box = (slice(max(0, y0 - r0), max(0, y1 - r0)), slice(max(0, x0 - c0), max(0, x1 - c0)))
        read[box] |= view[box] == d["digit"]
    n, blobs = cv2.connectedComponents((view != BACKGROUND).astype(np.uint8), connectivity=8)
    kept = np.zeros(n, bool)
    kept[np.unique(blobs[read])] = True
    kept[0] = False
    stray = kept[blobs] & ~read
    view[~kept[blobs]] = BACKGROUND
    if stray.any():
        src = np.where(read, view, BACKGROUND).astype(np.uint8)
        kernel = np.ones((3, 3), np.uint8)
        for _ in range(64):  # a few px in practice: strays are a digit's own stroke pixels
            near = cv2.erode(src, kernel)
            fill = stray & (near != BACKGROUND)
            src[fill] = near[fill]
            stray &= ~fill
            if not fill.any() or not stray.any():
                break
        view[kept[blobs]] = src[kept[blobs]]
        view[stray & (src == BACKGROUND)] = BACKGROUND
    for d in digits:
        x0, y0, x1, y1 = d["bbox"]
        d["area"] = int((full[y0:y1, x0:x1] == d["digit"]).sum())
    return digits


def _has_ink(full: np.ndarray, d: dict, min_area: float) -> bool:
    """Whether a digit kept enough stroke ink once the mask follows the strokes (sets ``d["area"]``).

    ``min_area`` ink pixels, or a quarter of that when the ink still spans :data:`INK_SPAN` of the digit's
    height: a fine pen's digit is a long, thin stroke of little area (hairline fonts, a fine felt-tip at 0.6x
    net scale: 55 px where 56 were asked), while a smudge or shadow the net coloured keeps only specks.
    And a box at least :data:`LEGIBLE_HEIGHT` input pixels tall: on a blank page the scale normaliser enlarges
    specks, a hot pixel's JPEG ringing or a few dots of a faint margin up to 3x (:data:`~segapp.scale.MAX_UPSCALE`),
    and the net read 4-7 px of them as digits (5 of the 16 false reads in 2000 development sensor-noise and
    blank-paper frames, seeds 100-109); a digit that small is legible to no one. The box, rounded outwards from the
    net's scale, can be 8-10 px around 5-6 px of such ink (development frames 107/177 and 108/241, session 33), so
    the ink's own height must reach :data:`LEGIBLE_INK`: a faint photographed 1 in an 11 px box kept 7 px of ink
    (analysis seed 78, lone digits), the development sets' shortest digits read right 9 px (seed 103).
    """
    x0, y0, x1, y1 = d["bbox"]
    mine = full[y0:y1, x0:x1] == d["digit"]
    d["area"] = int(mine.sum())
    if y1 - y0 < LEGIBLE_HEIGHT:
        return False
    rows = np.flatnonzero(mine.any(1))
    if len(rows) == 0:
        return False
    span = int(rows[-1] - rows[0] + 1)  # px: the ink's height
    if span < LEGIBLE_INK:  # a box rounded out from the net's scale can be legible where its ink is not
        return False
    if d["area"] < min_area and not (d["area"] >= min_area / 4 and span >= INK_SPAN * (y1 - y0)):
        return False
    return _is_stroke(mine, span)


def _is_stroke(mine: np.ndarray, span: int) -> bool:
    """Whether a digit's mask (bool, its box; ``span``: its ink's height in px) is pen strokes rather than a
    smudge or sensor noise.

    A smudge, a shadow or a blot the net coloured is filled: as wide as it is tall, where even a marker's
    stroke is under half a digit's height (:data:`BLOB_WIDTH`). Noise is specks: a stroke is mostly one
    connected piece, even when a faint pencil line breaks (:data:`PIECE_SHARE`).
    """
    m = mine.astype(np.uint8)
    framed = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # as np.pad, at a fifth of its cost
    dist = cv2.distanceTransform(framed, cv2.DIST_L2, 3)
    if 2 * float(dist.max()) >= BLOB_WIDTH * span:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    return n <= 2 or int(stats[1:, cv2.CC_STAT_AREA].max()) >= PIECE_SHARE * int(m.sum())

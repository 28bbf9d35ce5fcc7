"""Masks that follow the ink at the input's own resolution: where a stroke is, and which digit it belongs to.

The net's class map, upsampled back to the input, cannot place a boundary more finely than one net pixel (40 px
in a phone photo) and wears the faint band a resampled, blurred or compressed stroke spreads around itself.
:func:`ink_refine` cuts the mask to the stroke ink, and gives stroke edges the net dropped back to their digit.
Images read at their own size measure ink with the conservative normalisation (``Prepared.gray``'s noise floor:
at M2NIST's scale a lower floor lets a blurred photo's halo in, dev photos at 1x 0.970 -> 0.950 mIoU); resampled
ones (small digits, big photos) with the net's lower, pixel-to-pixel floor (``normalise(faint=True)``) but no
top-hat (at the input's resolution a stroke may be wider than the net-scale top-hat). Under the conservative floor
a light-handed digit beside dark ones lost its whole mask, and the digit with it (``settle`` drops a digit left
without ink), and every stroke lost its faint edge: dev hands photographed at 13-20 px 88% / 0.885 -> 90% / 0.916,
at 24-160 px 0.989 -> 0.997 (read, mIoU). The lower floor adds no digit where the net saw none: it only cuts the
net's mask. The rules for "stroke ink" (:func:`stroke_ink`, :func:`ink_rule`) follow the truth's: M2NIST's
ink > 0 on a clean canvas at the net's scale, a quarter of the stroke's full ink elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from .classes import BACKGROUND, REVIEW_BELOW
from .images import Prepared
from .normalise import is_clean, normalise, on_black
from .scale import TARGET_HEIGHT

INK_LEVEL = 48  # of 255: normalised ink at or above this is stroke wherever the image was resampled or blurred
INK_FLOOR = 16  # of 255: normalised ink below this is never a stroke (paper grain the normaliser let through)
STROKE_SHARE = 0.25  # of a stroke's local full ink: where a faint blurred stroke ends (the truth's rule: a quarter)
QUARTER = 64  # of 255: a quarter of full ink, the truth's edge of a stroke (fainter is the void band)
LOSSY_LEVEL = 24  # of 255: ink from which a pixel of a ringing JPEG at the net's scale is stroke (see stroke_ink)
RING_NOISE = 0.05  # of 255: mean ink 2-4 px off the strokes above which an image is ringing (see is_quiet)
SHARP_EDGES = 0.465  # see is_sharp: between on-paper canvases (>= 0.476) and photos at the same scale (<= 0.455)
EXACT_RADIUS = 8  # px: larger neighbourhoods are dilated on a reduced copy (strongest_near)
STROKE_RADIUS = 3.0  # px at net scale (digits 20 px tall): the neighbourhood a stroke's full ink is looked for in
NATIVE_HEIGHT = 17.0  # px: clean images read unscaled with digits at least this tall follow M2NIST's ink > 0 rule
PHOTO_HEIGHT = 18.0  # px: and other images (photos, scans) the conservative rules; shorter ones the net's floor, as
# resampled ones do: at 17 px a light-handed photographed digit lost its stroke edges to the conservative floor
# (development photographs at 13-20 px: mIoU 0.936 -> 0.941)
FLOOR_SHARE = 0.5  # of the net's digit pixels: conservative ink covering less is a failed floor, not the net's halo:
# a lone faint digit photographed on grey paper kept 11-29% of its strokes (development lone digits, seeds 101-102:
# mIoU 0.962 -> 0.967); a photo's halo leaves 60-90% of the net's pixels lit (0.75 cost photos 0.956 -> 0.929)
FLOOR_SURE = 0.95  # ... and only where the net is this sure of every digit: on blank frames the net's floor kept
# specks of grain the net coloured as unsure digits (0.66-0.91), 6 false reads in 2000 development frames
INK_PIXELS = 2_000_000  # largest crop whose ink is measured at full resolution (memory: ~20 bytes a pixel)
JUDGED_HEIGHT = 24.0  # px: digits at most this tall in a photo on paper may follow the ink judge where one is given
# (its training pictures' digits are 11-36 px; at 28-36 px real people's photographed digits lost 0.003-0.014 mIoU to
# it, development seed 103; the thresholds were tuned there)
JUDGED_INK = 52  # of 255: the judge's clean ink from which a pixel is stroke; its estimate is a mean. With the judge
# lighting pixels only beside sure digits (session 42), small photographed hands at seeds 110 / 111 / 92 / 93 (seen):
# bleed -39 / -42 / -47 / -51% for +0.54 / +0.80 / +0.60 / +0.74 points of stroke pixels missed (48: -30 to -43% for
# +0.38 to +0.57; 56: -46 to -57% for +0.81 to +1.06), mIoU 0.8854 / 0.8984 / 0.9286 / 0.9310 (without a judge
# 0.8738 / 0.8883 / 0.9205 / 0.9266)
JUDGED_PIXELS = 1_000_000  # largest crop the ink judge runs on (~0.1 s on 2 cores); larger ones follow thresholds


def ink_map(raw: np.ndarray, inverted: bool, **how) -> np.ndarray:
    """Normalised ink of a crop (``how``: :func:`normalise`'s options); crops over :data:`INK_PIXELS` are
    normalised at a reduced size and the result upsampled (a phone photo's strokes are tens of pixels wide, so
    this loses no boundary worth having)."""
    h, w = raw.shape
    f = math.sqrt(INK_PIXELS / (h * w))
    if f >= 1:
        return normalise(raw, inverted=inverted, **how)[0]
    small = cv2.resize(raw, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(normalise(small, inverted=inverted, **how)[0], (w, h), interpolation=cv2.INTER_LINEAR)


def is_sharp(ink: np.ndarray) -> bool:
    """Whether a normalised image's strokes have crisp edges (a scan, a drawing, a canvas on paper) rather than a
    photo's blur: the 95th percentile of the gradient over the ink, as a share of the ink's full level. Crisp
    M2NIST-like strokes reach 0.48-0.53 (canvases, on paper, JPEG), photographs 0.2-0.45 (dev set)."""
    lit = ink > 0
    if lit.sum() < 20:
        return False
    g = ink.astype(np.float32)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) / 8
    return float(np.percentile(mag[lit], 95)) >= SHARP_EDGES * max(float(np.percentile(g[lit], 99)), 1.0)


def is_quiet(ink: np.ndarray) -> bool:
    """Whether a normalised image is free of compression ringing: next to nothing lit 2-4 px off its strokes.

    A JPEG's ringing lights faint pixels beside every stroke, where a lossless M2NIST canvas holds exact zeros;
    under the ink > 0 rule those pixels joined the digits (JPEG paper at quality 60-75: mIoU 0.91 with the faint
    band void, against 0.99 under the quarter rule). The mean ink in a ring 2-4 px off the strokes is 0.0 at
    quality 90-100 and 0.1-1.8 from quality 75 down (dev canvases on paper).
    """
    strong = (ink >= QUARTER).astype(np.uint8)
    if not strong.any():
        return True
    d = cv2.distanceTransform(1 - strong, cv2.DIST_L2, 3)
    ring = ink[(d > 2) & (d <= 4)]
    return not len(ring) or float(ring.mean()) < RING_NOISE


def stroke_ink(ink: np.ndarray, rule: str, radius: int) -> np.ndarray:
    """(h, w) bool: where a normalised image's strokes are, as the masks should follow them.

    ``rule`` (see :func:`ink_rule`):

    * ``exact``: a crisp, lossless image at the net's own scale (an M2NIST canvas, also on paper), whose every
      lit pixel is stroke (M2NIST's own rule: ink > 0);
    * ``lossy``: the same picture compressed (a JPEG scan): its ringing lights faint pixels beside each stroke,
      so a stroke pixel holds at least :data:`LOSSY_LEVEL` (the ringing stays below it; the stroke's own faint
      edge, which is void in the truth, goes with it);
    * ``spread``: the image was resampled or blurred, and its faint band is where the stroke *spread*, not
      where it was drawn: a stroke pixel holds at least :data:`STROKE_SHARE` of its stroke's full ink (the
      strongest ink within ``radius`` px, about a stroke width), capped at :data:`INK_LEVEL` so that a bold
      stroke's edge is not cut, and never below :data:`INK_FLOOR`, so that noise next to nothing is not ink.
      A global level alone cuts thin, faint strokes (a pencil line's peak is a third of a marker's);
    * ``blurred``: the same for a photo read at its own size, capped at :data:`QUARTER` instead: there the
      blur spreads a thin stroke a pixel past where it was drawn, and a lower cap coloured that pixel (dev
      photos at M2NIST's scale: mIoU 0.947 -> 0.960; canvases on paper that read as blurred, 0.983 -> 0.974).
    """
    if rule == "exact":
        return ink >= 1
    if rule == "lossy":
        return ink >= LOSSY_LEVEL
    peak = strongest_near(ink, max(1, radius)).astype(np.float32)
    cap = QUARTER if rule == "blurred" else INK_LEVEL
    return ink.astype(np.float32) >= np.maximum(INK_FLOOR, np.minimum(cap, STROKE_SHARE * peak))


def strongest_near(ink: np.ndarray, radius: int) -> np.ndarray:
    """(h, w) uint8: the strongest ink within a disc of ``radius`` px of each pixel (a grey dilation).

    In a phone photo read at 1/30 scale the radius is ~90 px, and an exact 181 x 181 disc over 12 MP took 2 s of
    the 3 s budget. Past :data:`EXACT_RADIUS` the dilation runs on a block-max copy ``f`` times smaller (each
    block keeps its brightest pixel, so no ink is lost): the disc's edge moves by less than ``f`` px, which at
    that radius is a few per cent of it, at 1/f^2 of the cost.
    """
    f = max(1, radius // EXACT_RADIUS)
    if f == 1:
        return cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    h, w = ink.shape
    H, W = -(-h // f) * f, -(-w // f) * f
    blocks = np.pad(ink, ((0, H - h), (0, W - w))).reshape(H // f, f, W // f, f).max(axis=(1, 3))
    r = max(1, round(radius / f))
    small = cv2.dilate(blocks, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)[:h, :w]


def stretched(ink: np.ndarray, radius: int) -> np.ndarray:
    """(h, w) uint8: normalised ink with each stroke stretched to full ink (divided by its strongest ink within
    ``radius`` px, at least :data:`INK_LEVEL`, so that grain next to nothing stays grain): what the ink judge sees,
    in training and in use, so that a light-handed digit's strokes look like a dark one's and only their blur is
    left to judge."""
    peak = np.maximum(strongest_near(ink, max(1, radius)), INK_LEVEL).astype(np.float32)
    return np.clip(ink * (255.0 / peak), 0, 255).astype(np.uint8)


def on_paper(raw: np.ndarray, inverted: bool) -> bool:
    """Whether a crop's background is paper (a photo, a scan: grain, at most half its pixels at exactly no ink)
    rather than a drawing's exact zeros. A drawing's ink is its clean ink, resampled or compressed or not, and its
    truth is that ink: the ink judge, which estimates the ink before a camera's blur, cut true strokes from
    lossless canvases at 0.7x that were too faint-edged to pass :func:`~segapp.normalise.is_clean` (analysis seed
    98: 6 of 100, 0.9905 -> 0.9877 mIoU; session 41)."""
    return not on_black(255 - raw if inverted else raw)


def ink_rule(ink: np.ndarray | None, raw: np.ndarray, inverted: bool, scale: float,
             digit_height: float | None) -> str:
    """Which :func:`stroke_ink` rule a crop follows. Read at its own size with digits of M2NIST's height or more
    (:data:`NATIVE_HEIGHT` when clean, :data:`PHOTO_HEIGHT` otherwise):
    ``exact`` or ``lossy`` when crisp (lossless or ringing: :func:`is_quiet`), ``blurred`` when not (a photo:
    :func:`is_sharp` tells a canvas on paper from a photo at the same scale). Resampled or small: ``spread``
    (``ink`` is only looked at for images read at their own size). Read at its own size with no conservative ink
    at all (a small crop whose digits fill the frame, see :mod:`segapp.scale`): ``spread``, the net's floor."""
    if scale != 1.0 or not ink.any():
        return "spread"
    clean = is_clean(255 - raw if inverted else raw)
    if digit_height is not None and digit_height < (NATIVE_HEIGHT if clean else PHOTO_HEIGHT):
        return "spread"
    if clean:
        return "exact"
    if not is_sharp(ink):
        return "blurred"
    return "exact" if is_quiet(ink) else "lossy"


def ink_refine(full: np.ndarray, prepared: Prepared, scale: float, digit_height: float | None = None,
               sure: float = 0.0, judge: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Makes digit masks follow the ink at the input's own resolution (in place).

    Two rules: a pixel without stroke ink (:func:`stroke_ink`) is background, and stroke ink touching a
    digit belongs to it. The first removes the halo that upsampled logits wear (they cannot place a
    boundary more finely than one net pixel: 40 px in a phone photo) and the faint band a resampled
    or blurred stroke spreads around itself; the second gives stroke edges the net dropped back to
    their digit. Ink is measured on a crop around the digits (see :func:`ink_map`) with the polarity
    found for the whole image. Where the conservative ink covers under :data:`FLOOR_SHARE` of the net's
    digit pixels and the net is sure of its digits (``sure``, the least confidence of a digit read, at least
    :data:`FLOOR_SURE`), the net's own floor is followed instead (the ``spread`` rule).

    ``judge`` (:func:`segapp.ink_judge.clean_ink` with a trained judge: normalised ink -> the clean ink it came
    from, both uint8): where an image on paper (a photo or a scan: :func:`on_paper`) follows the ``spread`` rule
    (resampled, or digits under :data:`PHOTO_HEIGHT`) with digits at most :data:`JUDGED_HEIGHT` px tall, stroke
    ink is where the judge's clean ink reaches :data:`JUDGED_INK`, which the thresholds alone cannot tell from a
    photo's blur (a drawing's ink is its clean ink: the thresholds follow it). Photos read at their own size
    (``blurred``) keep the thresholds: there a crisp JPEG canvas on paper wanted a lower level than a blurred photo
    (48 vs 64 of 255), and at the one between them (56) canvases on paper lost 0.002 mIoU for lone digits' +0.003
    (development seed 103, session 41). The judge sees each stroke stretched to full ink (:func:`stretched`, as in
    its training; a light-handed digit beside dark ones kept 61-66% of its strokes to a judge that saw it
    unstretched) and decides within a pixel of the strokes it sees; thresholds' ink it sees no stroke near stays.
    Beside an unsure digit (under :data:`~segapp.classes.REVIEW_BELOW`) it only takes the thresholds' ink away: a
    pixel it lit by the thresholds' ink let the ``grow`` below spread grain into a "6" (seed 110, session 42), and a
    speck it lit kept a digit on a blank page (reporting seed 500, session 40). Where every digit is sure it may also
    keep a pixel next to the thresholds' ink inside the net's own mask: a light-handed stroke's faint edge.
    """
    ys, xs = np.nonzero(full != BACKGROUND)
    if len(ys) == 0:
        return
    if scale == 1.0:
        y0, x0, ink = 0, 0, prepared.gray
        y1, x1 = full.shape
    else:
        m = int(TARGET_HEIGHT / scale)  # a digit height of paper around the digits, for the background estimate
        y0, y1 = max(0, ys.min() - m), min(full.shape[0], ys.max() + 1 + m)
        x0, x1 = max(0, xs.min() - m), min(full.shape[1], xs.max() + 1 + m)
        ink = None  # measured below: a resampled crop follows the spread rule, whatever its ink
    raw = prepared.raw[y0:y1, x0:x1]
    rule = ink_rule(ink, raw, prepared.inverted, scale, digit_height)
    radius = math.ceil(STROKE_RADIUS / scale)
    view = full[y0:y1, x0:x1]
    lit = None if rule == "spread" else stroke_ink(ink, rule, radius)
    if lit is not None and sure >= FLOOR_SURE and lit[view != BACKGROUND].mean() < FLOOR_SHARE:
        lit = None  # the conservative floor took the digits themselves for noise (see FLOOR_SHARE)
    faint = None
    if lit is None:  # the faint floor, see the module's docstring
        faint = ink_map(raw, prepared.inverted, faint=True, tophat=0)
        lit = stroke_ink(faint, "spread", radius)
    height = digit_height if digit_height is not None else TARGET_HEIGHT / scale
    if (judge is not None and rule == "spread" and height <= JUDGED_HEIGHT and raw.size <= JUDGED_PIXELS
            and on_paper(raw, prepared.inverted)):
        faint = ink_map(raw, prepared.inverted, faint=True, tophat=0) if faint is None else faint
        judged = judge(stretched(faint, radius)) >= JUDGED_INK
        by = cv2.dilate(judged.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # within a pixel of its strokes
        if sure >= REVIEW_BELOW:  # every digit sure: the judge also keeps a faint stroke's edge the net coloured,
            near = cv2.dilate(lit.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # a pixel from the thresholds' ink
            lit = (judged & near & (view != BACKGROUND)) | (lit & ~by)
        else:  # an unsure digit (grain the net coloured on a blank frame: 0.73): it only takes ink away
            lit = lit & (judged | ~by)  # a stroke it sees none of stays
    view[~lit & (view != BACKGROUND)] = BACKGROUND
    grow = max(2, math.ceil(1 / scale))  # px: one net pixel, and at least the 2 px of an anti-aliased edge
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(grow):
        orphan = lit & (view == BACKGROUND)
        if not orphan.any():
            break
        near = cv2.erode(view, kernel)  # min over 3x3: any digit (0-9) beats background (10)
        view[orphan] = near[orphan]

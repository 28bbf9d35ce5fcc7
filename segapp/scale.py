"""Scale normalisation: bring any image's digits to the size the net was trained on (20 px tall).

A reduced copy of the image (at most ``analysis_pixels``) is normalised (polarity, uneven paper,
noise; :func:`segapp.normalise.normalise`) and its ink measured: the median height of the ink's
connected parts is the digit height (:mod:`segapp.ink_parts`). The image is then resized so digits reach the net about
:data:`TARGET_HEIGHT` px tall and normalised at that size. A 4000x3000 photo of a 3-digit number
becomes a few hundred pixels: its cost follows the digits, not the megapixels. Shared by inference
(:mod:`segapp.inference`) and training on folder datasets (:mod:`segapp.folders`), so the net
trains on what it will see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .images import Prepared
from .ink_parts import InkParts, SizeGroup, measure_ink, size_groups
from .normalise import normalise

TARGET_HEIGHT = 20.0  # px: MNIST digits are 20 px tall (ink > 64) in their 28x28 box; the net was trained there
KEEP_BAND = 1.25  # estimated heights within TARGET / KEEP_BAND .. TARGET * KEEP_BAND run unresized: the net was
# trained on digits 0.7-1.4x the target size (segapp.synth), but reads them best near it; 1.4 read 25-28 px real
# people's digits unresized and lost some (real development half, 1200 numbers: 84.58% -> 85.17% at 1.25)
NEAR_BAND = 2.8  # scales within 1 / NEAR_BAND .. NEAR_BAND (digits ~7-56 px) are near enough to be read both ways
AMBIGUOUS_PIXELS = 250_000  # images up to this size are read at both scales when the estimate is borderline
MAX_UPSCALE = 3.0  # below ~7 px a digit is not legible; more upscaling only magnifies noise
FRAME_FILL = 0.3  # digits at least this share of the image's height fill the frame (_digits_filling_the_frame)
MIN_FILL_HEIGHT = 10  # px: and are this tall at least


@dataclass
class NetInput:
    """One image as the net will see it, and how it got there.

    ``prepared`` is the caller's image or, when its polarity was found on a reduced copy, a new
    :class:`~segapp.images.Prepared` of the same pixels that carries it (read it as ``n.prepared.inverted``, or
    :attr:`inverted`); :func:`to_net_scale` never changes the caller's.
    """

    prepared: Prepared
    image: np.ndarray  # (h, w) uint8, white ink on black, digits about TARGET_HEIGHT px tall
    scale: float  # net pixels per input pixel (1.0: unresized)
    digit_height: float | None  # estimated (or given) digit height in input pixels; None: no ink found
    groups: list[SizeGroup] = field(default_factory=list)  # digits of clearly different sizes: one pass each
    ambiguous: bool = False  # a small image whose estimate is near the keep band: the net also tries scale 1
    unerased: np.ndarray | None = None  # ``image`` before a notebook's rules were erased from it (None: the same)
    tilt: float = 0.0  # degrees the text is turned counterclockwise (segapp.tilt); read upright in its own pass

    @property
    def inverted(self) -> bool:
        """True when the image is dark ink on a light background (it was inverted for the net)."""
        return self.prepared.inverted


def to_net_scale(p: Prepared, rescale: bool = True, digit_height: float | None = None,
                 analysis_pixels: int = 1_000_000, max_net_pixels: int = 1_500_000) -> NetInput:
    """One prepared image -> :class:`NetInput`: normalised, digits about :data:`TARGET_HEIGHT` px tall.

    Args:
        p: the decoded image.
        rescale: off: the net sees the image at its own size (only ``max_net_pixels`` still applies).
        digit_height: px in the input; None: estimated from the ink.
        analysis_pixels: size of the reduced copy the digit height is measured on.
        max_net_pixels: the net's input is reduced to fit (bounds time and memory).
    """
    raw = p.raw
    H, W = raw.shape
    height = digit_height
    if rescale and height is None:
        a = min(1.0, math.sqrt(analysis_pixels / (H * W)))
        if a == 1.0:
            ink = p.gray
        else:
            ink, inverted = normalise(cv2.resize(raw, _size(W, H, a), interpolation=cv2.INTER_AREA))
            p = p.with_polarity(inverted)
        parts = measure_ink(ink) if ink.any() else None
        if (parts is None or parts.height is None) and a == 1.0:
            parts = _digits_filling_the_frame(p) or parts
        if parts is None:  # no ink, nor digits filling the frame: nothing to read, no net on megapixels of paper
            return NetInput(p, np.zeros((1, 1), np.uint8), 1.0, None)
        height = None if parts.height is None else parts.height / a
        groups = size_groups(parts, a, (H, W))
        if len(groups) > 1:  # the Segmenter reads each size group in its own pass
            return NetInput(p, np.zeros((1, 1), np.uint8), 1.0, height, groups)
    scale = 1.0
    if rescale and height is not None:
        s = min(TARGET_HEIGHT / height, MAX_UPSCALE)
        if not (1 / KEEP_BAND <= s <= KEEP_BAND):
            scale = s
    scale = min(scale, math.sqrt(max_net_pixels / (H * W)))  # bounded cost, whatever the digits
    if scale == 1.0:
        return NetInput(p, p.net_gray, 1.0, height)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image, inverted = normalise(cv2.resize(raw, _size(W, H, scale), interpolation=interp), faint=True)
    p = p.with_polarity(inverted)
    # Near the band (NEAR_BAND: a factor 2 of the band as it was, 1.4), a tall part may be two digits merged (or short
    # parts pieces of one): on a small image, reading it both ways costs little, and the Segmenter keeps the more
    # confident reading.
    near = digit_height is None and 1 / NEAR_BAND <= scale <= NEAR_BAND
    return NetInput(p, image, scale, height, ambiguous=near and H * W <= AMBIGUOUS_PIXELS)


def _digits_filling_the_frame(p: Prepared) -> InkParts | None:
    """The net's ink measured when the conservative floor left no digit, if its digits fill the frame.

    On a small crop of a number (13-20 px digits, photographed, 30-40 px tall) the ink is a large share of the
    pixels, so the conservative floor's noise, measured as the spread of the whole image, is the digits' own
    contrast: everything is zeroed and the number vanishes. The net's floor measures noise from pixel to pixel and
    keeps them. Specks of sensor noise pass that floor too, so its parts are taken only when they stand at least
    :data:`FRAME_FILL` of the image's height and :data:`MIN_FILL_HEIGHT` px: digits filling a crop, not dust on
    a page (dev blank frames measure 8-10 px parts on 70-460 px frames).
    """
    H = p.raw.shape[0]
    parts = measure_ink(p.net_gray)
    if parts.height is None or parts.height < max(MIN_FILL_HEIGHT, FRAME_FILL * H):
        return None
    return parts


def _size(W: int, H: int, s: float) -> tuple[int, int]:
    """cv2 (width, height) of an H x W image scaled by ``s`` (rounded down: never above a pixel budget), >= 1 px."""
    return max(1, int(W * s)), max(1, int(H * s))

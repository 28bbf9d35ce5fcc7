"""Images into M2NIST form: white ink on an exactly-black background, whatever the paper, pen, light or file.

:func:`normalise` is what every image goes through before the net (and what training's photographs go through,
so the net sees them alike): polarity (:func:`is_dark_on_light`), uneven paper (:func:`background`), the noise
floor (:func:`pixel_noise`), the ink stretched to full range (:func:`stretch`). Lossless M2NIST-style images
(:func:`is_clean`) pass through unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

FAINT_SHARE = 0.15  # see is_clean()
NOISE_FLOOR = 10.0  # grey levels above the background that count as ink in lossy images (tuned on the val split)
TOPHAT = 11  # px: the net's image keeps only ink narrower than this (digits ~20 px tall there; strokes <= 6 px)
FAINT_FLOOR = 6.0  # the same for the net's image (normalise's faint): a light-handed digit stays whole (analysis seeds)


def is_clean(g: np.ndarray) -> bool:
    """True for lossless M2NIST-style images: mostly exactly-zero background and crisp strokes.

    Lossy copies (JPEG) of the same picture also have a zero background, but compression ringing
    leaves a halo of faint 1-6 values around every stroke: about 20-45% of the non-zero pixels at
    JPEG quality 75-95, against under 10% (2% on average) in M2NIST, where faint values are only
    the digits' own anti-aliased edges.
    """
    if not on_black(g):
        return False
    lit = g > 0
    return (lit & (g <= 6)).sum() <= FAINT_SHARE * max(int(lit.sum()), 1)


def on_black(g: np.ndarray) -> bool:
    """Whether over half of an image (bright ink on dark) is exactly zero: a drawing's or a canvas's black, lossless
    or not, rather than a photo's or a scan's paper, whose grain leaves hardly a pixel at exactly no ink."""
    return bool((g == 0).mean() > 0.5)


def background(g: np.ndarray) -> np.ndarray:
    """Smooth estimate of the paper's level under uneven lighting: block quartiles, bilinearly upsampled.

    ``g`` has bright ink on a darker background. Ink covers well under 75% of almost every block of
    20 px or more, so each block's lower quartile is paper; up to 6 x 6 blocks follow a lighting
    gradient or a shadow without following the strokes.
    """
    h, w = g.shape
    gy, gx = int(np.clip(h // 20, 1, 6)), int(np.clip(w // 20, 1, 6))
    if gy * gx == 1:
        return np.full_like(g, float(np.percentile(g, 25)))
    ys, xs = np.linspace(0, h, gy + 1).astype(int), np.linspace(0, w, gx + 1).astype(int)
    blocks = [[g[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for j in range(gx)] for i in range(gy)]
    grid = np.array([[np.percentile(b, 25) for b in row] for row in blocks], np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def is_dark_on_light(g: np.ndarray) -> bool:
    """Polarity: the background is the median; ink lies on the far side of it from the paper.

    Compares the median's distance to the darkest and brightest ends (1st/99th percentiles), so a
    grey, tinted or dim photo of paper is recognised as well as a white scan.
    """
    lo, med, hi = np.percentile(g, [1, 50, 99])
    if hi - lo < 1:
        return bool(med > 127)
    return bool(med - lo > hi - med)


def normalise(gray: np.ndarray, inverted: bool | None = None, faint: bool = False,
              tophat: int | None = None) -> tuple[np.ndarray, bool]:
    """Puts an 8-bit grayscale image into M2NIST form: white ink on an exactly-black background.

    Clean images pass through unchanged, so every faint stroke pixel the model was trained on is
    kept. Others (photos, scans, JPEGs) get their local background level (see :func:`background`)
    subtracted, the noise below :data:`NOISE_FLOOR` (or 3 sigma of the background, if larger)
    zeroed, and the ink stretched to 255.

    Args:
        gray: (H, W) uint8 grayscale.
        inverted: the polarity when already known (e.g. for a crop, whose own statistics may mislead).
        faint: noise measured from pixel to pixel (:func:`pixel_noise`) instead of over the whole background,
            whose spread also counts lighting the background estimate did not follow: a lower floor that keeps
            a calligraphic pen's hairlines in a photo (held hands, photographed, analysis seed: 85% -> 87% read),
            and a floor of :data:`FAINT_FLOOR` that keeps a light-handed digit beside dark ones whole (on paper:
            84% -> 87%). With a floor that low, what the coarse background grid leaves of the light (a dark
            corner, a vignette) came through as a grey wash the net read digits in; a top-hat of
            :data:`TOPHAT` px takes away everything wider than a stroke first (dev blank frames read as
            nothing: dust 99.4% -> 100%, ruled paper, smudges and sensor noise 97.0% -> 99.2%, n=500).
            For what the net sees; the digit height is measured without it, as specks of sensor noise above a
            lower floor would pass for tiny digits.
        tophat: the top-hat's size in px (default: :data:`TOPHAT` with ``faint``, none without); 0: none (the
            masks' faint ink at the input's resolution, where a stroke may be wider than the net-scale top-hat).

    Returns:
        The normalised image and whether it was inverted (dark ink on light background).
    """
    if not inverted and gray.dtype == np.uint8:
        # Fast path, same answer: when over half the pixels are exactly 0 the median is 0, so the image is not
        # dark-on-light (is_dark_on_light) and is_clean's first test passes; only its faint-share test remains.
        # An M2NIST canvas is decided by two counts instead of three percentiles and a float copy.
        n_lit = int(np.count_nonzero(gray))
        if 2 * (gray.size - n_lit) > gray.size:
            n_faint = int(np.count_nonzero(gray <= 6)) - (gray.size - n_lit)
            if n_faint <= FAINT_SHARE * max(n_lit, 1):
                return gray.copy(), False
            inverted = False
    g = gray.astype(np.float32)
    inverted = is_dark_on_light(g) if inverted is None else inverted
    if inverted:
        g = 255.0 - g
    if is_clean(g):
        return g.astype(np.uint8), inverted
    g = g - background(g)  # paper at about 0 (the background estimate is its lower quartile)
    tophat = (TOPHAT if faint else 0) if tophat is None else tophat
    if tophat:  # a top-hat: what the grid left of the light (a dark corner, a vignette's edge), smudges, shadows
        g = g - cv2.morphologyEx(g, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (tophat, tophat)))
    level = float(np.median(g))  # paper's middle: ink is a minority of pixels
    # robust sigma of the paper's grain and sensor noise
    noise = pixel_noise(g) if faint else 1.4826 * float(np.median(np.abs(g - level)))
    floor = level + max(3.0 * noise, FAINT_FLOOR if faint else NOISE_FLOOR)
    return stretch(g, floor), inverted


LAPLACE_NOISE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)  # its output's sigma: 6 x the input's


def pixel_noise(g: np.ndarray) -> float:
    """Robust sigma of pixel noise (Immerkaer's estimator, with a median): blind to smooth lighting and gradients,
    which a second difference cancels, and to the strokes, a minority of pixels."""
    return 1.4826 * float(np.median(np.abs(cv2.filter2D(g, -1, LAPLACE_NOISE)))) / 6.0


def stretch(g: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Zeroes everything at or below ``floor`` and maps the ink's 99th percentile to 255 (uint8)."""
    lit = g > floor
    peak = float(np.percentile(g[lit], 99)) if lit.sum() >= 10 else 0.0
    if peak <= floor:  # blank page: nothing stands out from the background
        return np.zeros(g.shape, np.uint8)
    out = np.where(lit, (g - floor) * (255.0 / (peak - floor)), 0.0)
    return np.clip(out, 0, 255).round().astype(np.uint8)

"""What else each digit might be: the class the net ranks next, for readings worth checking.

A reading's confidence (:attr:`segapp.render.Segmentation.confidence`) says which readings to check
(:data:`segapp.classes.REVIEW_BELOW`); a digit's alternative says what the likeliest correction is. Computed at the
net's scale from the logits, like the reading itself (:class:`segapp.inference.Segmenter` calls both functions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .classes import BACKGROUND, NUM_DIGITS
from .postprocess import digit_pixels

if TYPE_CHECKING:
    import torch


def runner_up(logits: torch.Tensor, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) logits and their (h, w) class map -> for each digit pixel, the digit class the net ranks best after
    the pixel's own (uint8; background elsewhere) and its softmax probability (float32; 0 elsewhere): what
    :func:`alternatives` sums per digit. Only digit pixels are computed (~6% of an M2NIST canvas)."""
    alt, prob = np.full(small.shape, BACKGROUND, np.uint8), np.zeros(small.shape, np.float32)
    ys, xs = np.nonzero(small != BACKGROUND)
    if len(ys):  # in NumPy: torch's per-call overhead made this 1.6 ms a canvas, a third of predict's time
        z = logits.float().numpy()[:, ys, xs]  # (C, pixels)
        e = np.exp(z - z.max(0))
        p = e[:NUM_DIGITS] / e.sum(0)  # (10, pixels): softmax over all classes, digits kept
        p[small[ys, xs], np.arange(len(ys))] = 0.0  # the pixel's own class
        k = p.argmax(0)
        alt[ys, xs], prob[ys, xs] = k, p[k, np.arange(len(ys))]
    return alt, prob


def runner_sums(d: dict, mine: np.ndarray, runner: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(10,) float64: each digit class's runner-up probability (:func:`runner_up`) summed over a digit's pixels
    ``mine`` (bool, over its net-scale box, as :func:`~segapp.postprocess.digit_pixels` gives them)."""
    alt, prob = runner
    x0, y0, x1, y1 = d["bbox"]
    return np.bincount(alt[y0:y1, x0:x1][mine], prob[y0:y1, x0:x1][mine], minlength=BACKGROUND + 1)[:NUM_DIGITS]


def alternatives(digits: list[dict], small: np.ndarray, runner: tuple[np.ndarray, np.ndarray]) -> None:
    """Gives each digit (net-scale boxes) the class the net would read it as next (``alternative``; None when no
    pixel has one) and that class's mean probability over the digit's pixels (``alternative_confidence``).

    For a reading worth checking (:data:`~segapp.classes.REVIEW_BELOW`) this is the likeliest correction: on held
    hands, real people's digits, notebook pages and lone digits (analysis seed 77, 800 numbers) it was the true digit
    for 76 of the 103 misread digits, and taking it fixed 59 of the 95 misread numbers."""
    for d in digits:
        mine = digit_pixels(d, small)
        sums = runner_sums(d, mine, runner)
        sums[d["digit"]] = 0.0  # a joined piece's own class may be the digit's
        k = int(sums.argmax())
        d["alternative"] = k if sums[k] > 0 else None
        d["alternative_confidence"] = round(float(sums[k] / max(int(mine.sum()), 1)), 4)  # as confidences are

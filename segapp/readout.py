"""The postprocess step of the one inference path: one image's net output at net scale -> its segmentation.

:meth:`segapp.inference.Segmenter.postprocess` calls :func:`read_out`; every job reaches it through the segmenter.
Digits are read where their size is known (the net's scale): runs of one class (:func:`~segapp.render.read_digits`)
with ink under them, off a page's ruled lines, each with its likeliest other reading, read again by the digit reader
and, where words stand beside the number, left out with their words (:mod:`segapp.words`). Then the class map comes
back at the input's exact H x W (bilinear logits, argmax, only around the digits), its masks cut to the ink at full
resolution (:func:`~segapp.ink.ink_refine`), and the boxes are mapped to input pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch

from . import signs as sign_rule
from . import words
from .alternatives import alternatives, runner_up
from .classes import BACKGROUND, MIN_DIGIT_AREA
from .context import ContextReader
from .engines import CropRunner
from .ink import ink_refine
from .postprocess import class_maps, settle, stands_out, upsample_classes, vote_blobs
from .reader import DigitReader
from .render import Segmentation, read_digits
from .reread import reread
from .ruled import inked, on_the_lines, ruled_lines
from .scale import NetInput


def _keep(digits: list[dict], kept: list[dict], left_out: list[list[int]]) -> list[dict]:
    """``kept`` (a rule's digits, in order); the net-scale boxes of the others appended to ``left_out``."""
    ids = {id(d) for d in kept}
    left_out += [d["bbox"] for d in digits if id(d) not in ids]
    return kept


def read_out(n: NetInput, logits: torch.Tensor | None, small: np.ndarray | None, conf: np.ndarray | None,
             runner: tuple[np.ndarray, np.ndarray] | None, *, reader: DigitReader | None, letters: CropRunner | None,
             signs: CropRunner | None, context: ContextReader | None, clean_ink: Callable | None, reader_weight: float,
             drop_words: bool) -> Segmentation:
    """(C, h, w) logits -> class map at the input's size, digits read in lines, in input pixels.

    ``small`` / ``conf`` / ``runner``: the net-scale class map, its softmax confidence and the runner-up classes when
    already computed for the whole batch (:meth:`~segapp.inference.Segmenter.net`); taken from ``logits`` otherwise
    (then ``logits`` may be None where the net's scale is the input's own: nothing is upsampled). ``reader``,
    ``letters``, ``signs``, ``context``, ``clean_ink``: the weights' digit reader, letters reader, signs reader,
    context reader and ink judge (None: that step is skipped); ``reader_weight``, ``drop_words``:
    :class:`~segapp.inference.InferenceConfig`'s (``drop_words`` drops signs too: :mod:`segapp.signs`).
    """
    if small is None or conf is None:
        small, conf = class_maps(logits[None])
        small, conf = vote_blobs(logits, small[0]), conf[0]
    runner = runner_up(logits, small) if runner is None else runner
    left_out: list[list[int]] = []  # net-scale boxes of the glyphs of words and signs left out (words, signs)
    # a faint rule is no 1: followed where it ran before it was erased from the net's input (development grid
    # pages, seeds 100-101 and 77-78: 3 numbers of 400 lost an extra 1, none changed otherwise)
    faint = n.image if n.unerased is None else n.unerased
    digits = [d for d in read_digits(small, conf) if inked(d, small, faint)]
    lines = ruled_lines(n.image)
    ruled = bool(lines.any())
    if ruled:  # a ruled line, a margin or a table's border is no digit, nor is where two of them cross
        digits = [d for d in digits if not on_the_lines(d, small, lines)]
    alternatives(digits, small, runner)  # each digit's likeliest other reading, while boxes are at net scale
    if (reader is not None or letters is not None or signs is not None) and digits:
        reread(digits, small, n.image, runner, reader, reader_weight, letters, signs if drop_words else None)
        if drop_words:
            digits = _keep(digits, sign_rule.drop_signs(digits), left_out)  # a sign alone, before words are judged
            if context is not None:
                words.context_letters(digits, small, n.image, context)
            digits = _keep(digits, words.drop_words(digits, small), left_out)  # (gaps on the ink, along the lean)
    for d in digits:
        d.pop("_not_digit", None)  # (kept where words are not dropped)
        d.pop("_split", None)  # read again or not, a split part is a digit like any other from here
    H, W = n.prepared.raw.shape
    full = small.copy() if small.shape == (H, W) else upsample_classes(logits, small, H, W)
    ink_refine(full, n.prepared, n.scale, n.digit_height, min((d["confidence"] for d in digits), default=0.0),
               clean_ink)
    if ruled:  # the line's stretches outside the digits it crosses leave the mask
        keep = np.zeros(small.shape, bool)
        for d in digits:
            x0, y0, x1, y1 = d["bbox"]
            keep[y0:y1, x0:x1] = True
        off = (lines & ~keep).view(np.uint8)
        off = off if off.shape == (H, W) else cv2.resize(off, (W, H), interpolation=cv2.INTER_NEAREST)
        full[off.view(bool)] = BACKGROUND
    sy, sx = small.shape[0] / H, small.shape[1] / W
    to_input = lambda b: [int(b[0] / sx), int(b[1] / sy), min(W, math.ceil(b[2] / sx)),  # noqa: E731
                          min(H, math.ceil(b[3] / sy))]
    for d in digits:  # boxes to input pixels
        d["bbox"] = x0, y0, x1, y1 = to_input(d["bbox"])
        if "_was" in d:  # read anew (reread): its pixels take the new class
            box = full[y0:y1, x0:x1]
            box[box == d.pop("_was")] = d["digit"]
        if "_joined" in d:  # pieces of one digit the net coloured otherwise (a 4's stem as a 1) take its class
            box = full[y0:y1, x0:x1]
            box[np.isin(box, d.pop("_joined"))] = d["digit"]
    digits = [d for d in digits if stands_out(full, d, n.prepared.raw, n.prepared.inverted)]
    digits = settle(full, digits, MIN_DIGIT_AREA / (sx * sy))
    return Segmentation.from_digits(full, n.prepared, digits, scale=n.scale, digit_height=n.digit_height,
                                    words_left_out=[to_input(b) for b in left_out])


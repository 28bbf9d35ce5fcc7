"""Each digit the net found, read a second time by the digit reader, and the two readings mixed.

The net's reading of a digit is a distribution over the ten digits: its mean confidence for the class it coloured,
and for every other class the summed runner-up probabilities of the digit's pixels (:func:`net_distribution`). The
reader's (:mod:`segapp.reader`) comes from the digit's own strokes, MNIST-normalised. The digit becomes the class
with the largest ``(1 - w) log p_net + w log p_reader``, ``w`` = :data:`READER_WEIGHT`. On the held hands' and
real people's analysis seeds (77-78, eight categories, 1600 numbers) the net alone read 1413, the reader alone 1420,
the mix at 0.5 / 0.6 / 0.7 1431 / 1433 / 1429; on eleven M2NIST-like development categories (seed 101, 1100
numbers) 1085 -> 1083 at 0.6 (docs/robustness.md, session 30). Only digits the net is unsure of are read again
(confidence under :data:`REREAD_BELOW`): the same 1432 of 1600 with 14% of those digits read again, and 3% on the
M2NIST-like sets, whose throughput the reader would otherwise halve. The reader retrained on varied crops (session
31) reads 1437 and 1086 by the same rule. Masks are not reshaped: a digit read anew keeps
its pixels, recoloured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .alternatives import runner_sums
from .classes import NUM_DIGITS
from .postprocess import digit_pixels
from .reader import own_strokes, read_crops, read_signs

if TYPE_CHECKING:
    from .reader import DigitReader, ReaderEnsemble

REREAD_BELOW = 0.95  # a digit the net is surer of than this keeps its reading (and costs the reader nothing)
READER_WEIGHT = 0.6  # share of the reader's log-probabilities in the mix (0: the net alone; 1: the reader alone)
FLOOR = 1e-3  # probability the net's distribution gives a class none of the digit's pixels ranks first or second
EPS = 1e-6  # keeps log() finite where a model gives a class exactly 0


def net_distribution(d: dict, mine: np.ndarray, runner: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The net's (10,) distribution over a digit (its pixels ``mine`` in its box; the net-scale runner-up maps):
    its confidence for its own class, each other class's runner-up probability summed over the digit's pixels
    (:func:`~segapp.alternatives.runner_sums`) and divided by their number, :data:`FLOOR` added, normalised."""
    p = runner_sums(d, mine, runner) / max(int(mine.sum()), 1)
    p[d["digit"]] = d["confidence"]
    p = p + FLOOR
    return p / p.sum()


def digit_crop(d: dict, small: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A digit's pixels in its net-scale box (``small``: the class map) and the reader's crop of them from the net's
    uint8 input ``image`` (:func:`~segapp.reader.own_strokes`; None: nothing to read)."""
    x0, y0, x1, y1 = d["bbox"]
    mine = digit_pixels(d, small)
    return mine, own_strokes(image[y0:y1, x0:x1].astype(np.float32) / 255.0, mine)


def mix_scores(p_net: np.ndarray, p_reader: np.ndarray, weight: float) -> np.ndarray:
    """The mixed reading's log-scores over the last axis: ``(1 - weight) log p_net + weight log p_reader``."""
    return (1.0 - weight) * np.log(p_net + EPS) + weight * np.log(p_reader + EPS)


def reread(digits: list[dict], small: np.ndarray, image: np.ndarray, runner: tuple[np.ndarray, np.ndarray],
           reader: DigitReader | None, weight: float = READER_WEIGHT,
           letters: DigitReader | ReaderEnsemble | None = None, signs: DigitReader | None = None) -> None:
    """Reads each digit the net is unsure of (under :data:`REREAD_BELOW`; net-scale boxes in ``small``, the net's
    uint8 input ``image``, ink high) with ``reader`` and mixes it with the net's reading, in place. A digit whose
    class changes gets ``_was`` (its former class: the caller recolours its pixels), the mix's probability as its
    ``confidence`` and the former class as its ``alternative`` (with the mix's probability of it).

    ``letters`` (a reader trained with letters, :data:`~segapp.reader.NOT_DIGIT`; or ``reader`` itself where it
    was) reads every digit, sure or not (a letter is read as a digit at 0.99 as readily as a digit is), and leaves
    its probability of no digit at all in ``_not_digit`` (:func:`segapp.words.drop_words` uses it). Its digit
    probabilities are not used: the shipped reader, trained on digits alone, reads them better (docs/robustness.md,
    session 35). ``signs`` (a reader trained with letters and signs, :data:`~segapp.reader.SIGN`) reads every digit
    too and leaves its probability of a sign in ``_sign`` (:func:`segapp.signs.drop_signs` uses it)."""
    if letters is None and reader is not None and reader.config.classes > NUM_DIGITS:
        letters = reader
    crops, where = [], []
    for i, d in enumerate(digits):
        unsure = reader is not None and (d["confidence"] < REREAD_BELOW or d.get("_split"))  # a split part: always
        if not unsure and letters is None and signs is None:
            continue
        mine, crop = digit_crop(d, small, image)
        if crop is not None:
            crops.append(crop)
            where.append((i, mine, unsure))
    if not crops:
        return
    if letters is not None:
        for (i, _, _), pn in zip(where, read_crops(letters, crops)[1]):
            digits[i]["_not_digit"] = float(pn)
    if signs is not None:
        for (i, _, _), ps in zip(where, read_signs(signs, crops)):
            digits[i]["_sign"] = float(ps)
    where = [(w, c) for w, c in zip(where, crops) if w[2]]
    if not where:
        return
    p_reader = read_crops(reader, [c for _, c in where])[0]
    for ((i, mine, _), _), pr in zip(where, p_reader):
        d = digits[i]
        p_net = net_distribution(d, mine, runner)
        mix = mix_scores(p_net, pr, weight)
        new = int(mix.argmax())
        if new != d["digit"]:
            p = np.exp(mix - mix.max())
            p /= p.sum()  # the mix as a distribution: the new class's and the former one's probabilities
            old = d["digit"]
            d["alternative"], d["alternative_confidence"] = old, round(float(p[old]), 4)
            d["_was"], d["digit"], d["confidence"] = old, new, round(float(p[new]), 4)

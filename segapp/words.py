"""Words beside a number are no digits: a word with one letter the reader is sure of leaves the reading whole.

People write numbers among words ("Room 42", "12 kWh", "Tel 5521"). The net colours every stroke it finds as the
likeliest digit, a letter as readily as a digit (an "R" read as 8 at 0.93, an "m" as 1 at 0.91), and no threshold
on its confidence tells them apart. A digit reader trained with letters (``segapp train-reader --letters``:
:data:`~segapp.reader.NOT_DIGIT`) says how sure it is that a glyph is no digit at all; :func:`segapp.reread.reread`
leaves that in ``_not_digit``.

One sure letter is not enough to read the rest of its word: the "o"s of "Room" are 0s by their shape, and only the
word they belong to says otherwise. So the glyphs of a line are cut into words at its spaces (:func:`words`: a gap
wide against the line's tallest glyph, or wide against the line's other gaps), and a word is dropped whole (not
read, its pixels left out of the mask) where the reader is sure of one of its glyphs, or fairly sure of one and
another is a lowercase letter's height (:func:`lettered`). A number written tight against its unit ("12kg") goes
with it; a number apart from its word stays.

Gaps are measured on the glyphs' ink along the line's lean (:func:`ink_shapes`): an italic face's boxes overlap
where its space is plain to see. And a context reader (``weights/context``, :mod:`segapp.context`) that sees each
glyph with its line around it finds the letters a shape alone does not tell: a word it finds letters, one of whose
glyphs the letters reader finds no digit, is dropped too (:func:`context_letters`, :func:`lettered`).
"""

from __future__ import annotations

import cv2
import numpy as np

from .context import ContextReader, letter_probability, windows
from .postprocess import digit_pixels
from .render import group_lines, share_rows

LETTER_SURE = 0.95  # the letters reader's probability of "no digit" at which a glyph drops its word alone ...
LETTER_LIKELY = 0.6  # ... and at which it drops a word that also holds a glyph of a lowercase letter's height
SHORT = 0.7  # share of the line's tallest glyph under which a glyph is that short (x-height: 0.5-0.7 of a digit's)
WORD_GAP = 0.55  # a gap between glyph boxes wider than this share of the line's tallest glyph starts a word ...
MIN_GAP = 0.15  # ... and so does one wider than this share that is also SPREAD of the tallest wider than the line's
SPREAD = 0.15  # median gap: a font's or an even hand's own space (a quarter to half a digit's height) between close
# letters (session 36's words_natural: typed "Room 42" is one word by WORD_GAP alone, and the number goes with it)
SLANT = (-0.2, 0.6)  # a line's slant (x per y, leaning right positive) is clipped to this: upright to italic
IN_CONTEXT = 0.7  # the context reader's mean probability of a letter over a word of two or more glyphs that drops it
WITNESS = 0.4  # ... where the letters reader also gives one of its glyphs this much (session 39: 0.6 before; a
# confirmatory test on new recordings: no digit number lost of 1,600, held lines 204 -> 208 of 400, fresh 104 -> 106)


def context_windows(digits: list[dict], classes: np.ndarray, image: np.ndarray) -> list[np.ndarray]:
    """Each digit's window of its line (:func:`segapp.context.windows`), in ``digits``' order: ``classes`` the
    net-scale class map its boxes are in, ``image`` the net's uint8 input."""
    ink = image.astype(np.float32) / 255.0
    out: dict[int, np.ndarray] = {}
    for line in group_lines(digits):
        for d, w in zip(line, windows(ink, [(d["bbox"], digit_pixels(d, classes)) for d in line])):
            out[id(d)] = w
    return [out[id(d)] for d in digits]


def context_letters(digits: list[dict], classes: np.ndarray, image: np.ndarray, reader: ContextReader) -> None:
    """Leaves in each digit's ``_letter`` how likely the context reader (:mod:`segapp.context`) finds it a letter
    or a sign, seeing its line around it; only where :func:`drop_words` will look (a glyph the letters reader
    finds no digit at :data:`LETTER_LIKELY`: elsewhere no word is dropped)."""
    if max((d.get("_not_digit", 0.0) for d in digits), default=0.0) >= LETTER_LIKELY:
        p = letter_probability(reader, np.stack(context_windows(digits, classes, image)))
        for d, q in zip(digits, p.tolist()):
            d["_letter"] = q


def ink_shapes(digits: list[dict], classes: np.ndarray) -> None:
    """Each digit's ink, for the word cut: ``_hull`` its pixels' convex hull ((K, 2) x, y at the class map's scale)
    and ``_slant`` its ink's lean (x per y, right-leaning positive: minus cov(x, y) / var(y)). An italic or script
    face leans its glyphs into each other's boxes, so a space plain to see is no gap between upright boxes ("97 pm":
    the 7's top and the p's stem overlap); measured along the line's lean, it is (its pixels:
    :func:`~segapp.postprocess.digit_pixels`)."""
    for d in digits:
        x0, y0 = d["bbox"][:2]
        ys, xs = np.nonzero(digit_pixels(d, classes))
        if len(xs) < 3:
            continue
        xs, ys = xs + x0, ys + y0
        var = float(ys.var())
        d["_slant"] = -float(((xs - xs.mean()) * (ys - ys.mean())).mean()) / var if var > 0 else 0.0
        d["_hull"] = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)).reshape(-1, 2)


def _extents(line: list[dict]) -> list[tuple[float, float]]:
    """Each glyph's left and right edge along the line's lean (the median of its glyphs' ``_slant``), measured at
    the line's middle row; upright box edges where a glyph's ink was not measured (:func:`ink_shapes`)."""
    if not all("_hull" in d for d in line):
        return [(d["bbox"][0], d["bbox"][2]) for d in line]
    s = float(np.clip(np.median([d["_slant"] for d in line]), *SLANT))
    mid = np.median([(d["bbox"][1] + d["bbox"][3]) / 2 for d in line])
    out = []
    for d in line:
        x = d["_hull"][:, 0] + s * (d["_hull"][:, 1] - mid)  # deslanted: a leaning stem stands at one x
        out.append((float(x.min()), float(x.max()) + 1))  # (+1: the box's right edge is exclusive)
    return out


def words(line: list[dict]) -> list[list[dict]]:
    """One text line's digits, left to right (net-scale ``bbox``) -> its words. Gaps are measured along the line's
    lean (:func:`_extents`) and against the line's tallest box (a digit's or a capital's height: a line of lowercase
    letters has a small median, and its letters' own gaps would cut a word in two): a gap over :data:`WORD_GAP` of it
    starts a word, and so does one over :data:`MIN_GAP` that stands :data:`SPREAD` above the line's median gap (the
    space of a line whose letters sit close; a line of two glyphs has only its one gap for a median, so there only
    :data:`WORD_GAP` cuts). Neighbours whose boxes do not :func:`~segapp.render.share_rows` (half the shorter one's)
    are never one word, however close: a word's letters sit in the line's x-height band, a number's digits wander (two
    rows of clean digits, "8 8" a third of a height apart, were left out as a word at seed 110, session 42)."""
    height = max(d["bbox"][3] - d["bbox"][1] for d in line)
    edges = _extents(line)
    gaps, right = [], edges[0][1]
    for left, r in edges[1:]:
        gaps.append(left - right)  # to the rightmost edge so far: a glyph may overhang the next
        right = max(right, r)
    median = float(np.median(gaps)) / height if gaps else WORD_GAP  # (one glyph: no gap to cut)
    cut = min(WORD_GAP, max(MIN_GAP, median + SPREAD)) * height
    out, word = [], [line[0]]
    for prev, d, g in zip(line, line[1:], gaps):
        if g > cut or not share_rows(prev, d):
            out.append(word)
            word = []
        word.append(d)
    out.append(word)
    return out


def lettered(p_not: list[float], heights: list[float], tallest: float, p_letter: list[float] | None = None) -> bool:
    """Whether a word is one to drop, from its glyphs' probabilities of no digit and heights (the line's tallest
    glyph ``tallest``): one glyph at :data:`LETTER_SURE`, or one at :data:`LETTER_LIKELY` beside a glyph under
    :data:`SHORT` of the tallest. A number's digits stand about equally tall; a word's lowercase letters do not,
    and a digit the reader takes for a letter at 0.6-0.95 (an 8 like an R, a 4 like a k) is rarely so short.
    With the context reader's ``p_letter`` (:func:`context_letters`), also a word of two or more glyphs with one at
    :data:`WITNESS` that the context reader finds letters at :data:`IN_CONTEXT` on average: two witnesses, as
    the lowercase height is in the rule before (an "R" at 0.7 beside an "oom" the net coloured as 0 0 4, all of
    them letters in context). The letters reader's witness keeps a typed number: the context reader saw numbers
    only in MNIST writers' hands, and finds a typeface's digits beside its words letters too ("Size 40 cm": 0.9);
    a lone glyph is left to the letters reader (a 1 apart is an l to anyone)."""
    most = max(p_not, default=0.0)
    if most >= LETTER_SURE or (most >= LETTER_LIKELY and min(heights) < SHORT * tallest):
        return True
    return (p_letter is not None and most >= WITNESS and len(p_letter) >= 2
            and sum(p_letter) / len(p_letter) >= IN_CONTEXT)


def dropped_in_line(line: list[dict], p_not: list[float], p_letter: list[float] | None = None) -> list[bool]:
    """One text line's glyphs, left to right, their probabilities of no digit and (where the context reader ran)
    of a letter in context -> whether each is in a word :func:`lettered` drops. The one rule the product
    (:func:`drop_words`) and the benchmarks apply."""
    tall = [d["bbox"][3] - d["bbox"][1] for d in line]
    out: list[bool] = []
    for word in words(line):  # the words split the line in order
        k, n = len(out), len(word)
        out += [lettered(p_not[k : k + n], tall[k : k + n], max(tall),
                         None if p_letter is None else p_letter[k : k + n])] * n
    return out


def drop_words(digits: list[dict], classes: np.ndarray | None = None) -> list[dict]:
    """The digits not in a word :func:`lettered` drops (by their ``_not_digit`` and their ``_letter`` where the
    context reader ran); pops those from all. ``classes``: the net-scale class map their boxes are in, for gaps
    measured on their ink (:func:`ink_shapes`; None: between upright boxes), only where a word may be dropped."""
    p = {id(d): d.pop("_not_digit", 0.0) for d in digits}
    q = {id(d): d.pop("_letter") for d in digits if "_letter" in d}
    dropped = set()
    if max(p.values(), default=0.0) >= LETTER_LIKELY:
        if classes is not None:
            ink_shapes(digits, classes)
        for line in group_lines(digits):
            p_letter = [q[id(d)] for d in line] if all(id(d) in q for d in line) else None
            drops = dropped_in_line(line, [p[id(d)] for d in line], p_letter)
            dropped.update(id(d) for d, drop in zip(line, drops) if drop)
    for d in digits:
        d.pop("_hull", None)
        d.pop("_slant", None)
    return [d for d in digits if id(d) not in dropped]

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
"""

from __future__ import annotations

import numpy as np

from .render import group_lines

LETTER_SURE = 0.95  # the letters reader's probability of "no digit" at which a glyph drops its word alone ...
LETTER_LIKELY = 0.6  # ... and at which it drops a word that also holds a glyph of a lowercase letter's height
SHORT = 0.7  # share of the line's tallest glyph under which a glyph is that short (x-height: 0.5-0.7 of a digit's)
WORD_GAP = 0.55  # a gap between glyph boxes wider than this share of the line's tallest glyph starts a word ...
MIN_GAP = 0.15  # ... and so does one wider than this share that is also SPREAD of the tallest wider than the line's
SPREAD = 0.15  # median gap: a font's or an even hand's own space (a quarter to half a digit's height) between close
# letters (session 36's words_natural: typed "Room 42" is one word by WORD_GAP alone, and the number goes with it)


def words(line: list[dict]) -> list[list[dict]]:
    """One text line's digits, left to right (net-scale ``bbox``) -> its words. Gaps are measured against the line's
    tallest box (a digit's or a capital's height: a line of lowercase letters has a small median, and its letters'
    own gaps would cut a word in two): a gap over :data:`WORD_GAP` of it starts a word, and so does one over
    :data:`MIN_GAP` that stands :data:`SPREAD` above the line's median gap (the space of a line whose letters sit
    close; a line of two glyphs has only its one gap for a median, so there only :data:`WORD_GAP` cuts)."""
    height = max(d["bbox"][3] - d["bbox"][1] for d in line)
    gaps, right = [], line[0]["bbox"][2]
    for d in line[1:]:
        gaps.append(d["bbox"][0] - right)  # to the rightmost edge so far: a slanted glyph may overhang the next
        right = max(right, d["bbox"][2])
    median = float(np.median(gaps)) / height if gaps else WORD_GAP  # (one glyph: no gap to cut)
    cut = min(WORD_GAP, max(MIN_GAP, median + SPREAD)) * height
    out, word = [], [line[0]]
    for d, g in zip(line[1:], gaps):
        if g > cut:
            out.append(word)
            word = []
        word.append(d)
    out.append(word)
    return out


def lettered(p_not: list[float], heights: list[float], tallest: float) -> bool:
    """Whether a word is one to drop, from its glyphs' probabilities of no digit and heights (the line's tallest
    glyph ``tallest``): one glyph at :data:`LETTER_SURE`, or one at :data:`LETTER_LIKELY` beside a glyph under
    :data:`SHORT` of the tallest. A number's digits stand about equally tall; a word's lowercase letters do not,
    and a digit the reader takes for a letter at 0.6-0.95 (an 8 like an R, a 4 like a k) is rarely so short."""
    most = max(p_not, default=0.0)
    return most >= LETTER_SURE or (most >= LETTER_LIKELY and min(heights) < SHORT * tallest)


def dropped_in_line(line: list[dict], p_not: list[float]) -> list[bool]:
    """One text line's glyphs, left to right, and their probabilities of no digit -> whether each is in a word
    :func:`lettered` drops. The one rule the product (:func:`drop_words`) and the benchmarks apply."""
    tall = [d["bbox"][3] - d["bbox"][1] for d in line]
    out: list[bool] = []
    for word in words(line):  # the words split the line in order
        k = len(out)
        out += [lettered(p_not[k : k + len(word)], tall[k : k + len(word)], max(tall))] * len(word)
    return out


def drop_words(digits: list[dict]) -> list[dict]:
    """The digits not in a word :func:`lettered` drops (by their ``_not_digit``); pops ``_not_digit`` from all."""
    p = {id(d): d.pop("_not_digit", 0.0) for d in digits}
    if max(p.values(), default=0.0) < LETTER_LIKELY:
        return digits
    dropped = set()
    for line in group_lines(digits):
        dropped.update(id(d) for d, drop in zip(line, dropped_in_line(line, [p[id(d)] for d in line])) if drop)
    return [d for d in digits if id(d) not in dropped]

"""Words beside a number are no digits: a word with one letter the reader is sure of leaves the reading whole.

People write numbers among words ("Room 42", "12 kWh", "Tel 5521"). The net colours every stroke it finds as the
likeliest digit, a letter as readily as a digit (an "R" read as 8 at 0.93, an "m" as 1 at 0.91), and no threshold
on its confidence tells them apart. A digit reader trained with letters (``segapp train-reader --letters``:
:data:`~segapp.reader.NOT_DIGIT`) says how sure it is that a glyph is no digit at all; :func:`segapp.reread.reread`
leaves that in ``_not_digit``.

One sure letter is not enough to read the rest of its word: the "o"s of "Room" are 0s by their shape, and only the
word they belong to says otherwise. So the glyphs of a line are cut into words at gaps wider than
:data:`WORD_GAP` of the line's glyph height (a space between words is wider than the room between a number's
digits), and a word holding a glyph at or above :data:`LETTER_GATE` is dropped whole: not read, its pixels left out
of the mask. A number written tight against its unit ("12kg") goes with it; a number apart from its word stays.
"""

from __future__ import annotations

import numpy as np

from .render import group_lines

LETTER_GATE = 0.9  # the reader's probability of "no digit" at which a glyph's word is dropped
WORD_GAP = 0.45  # a gap between glyph boxes wider than this share of the line's median glyph height starts a word


def words(line: list[dict], gap: float = WORD_GAP) -> list[list[dict]]:
    """One text line's digits, left to right (net-scale ``bbox``) -> its words: runs of digits whose boxes lie
    closer than ``gap`` of the line's median box height."""
    height = float(np.median([d["bbox"][3] - d["bbox"][1] for d in line]))
    out, word = [], [line[0]]
    for d in line[1:]:
        if d["bbox"][0] - max(p["bbox"][2] for p in word) > gap * height:
            out.append(word)
            word = []
        word.append(d)
    out.append(word)
    return out


def drop_words(digits: list[dict], gate: float = LETTER_GATE) -> list[dict]:
    """The digits not in a word with a letter (``_not_digit`` >= ``gate``); pops ``_not_digit`` from all."""
    sure = {id(d) for d in digits if d.pop("_not_digit", 0.0) >= gate}
    if not sure:
        return digits
    dropped = set()
    for line in group_lines(digits):
        for word in words(line):
            if any(id(d) in sure for d in word):
                dropped.update(id(d) for d in word)
    return [d for d in digits if id(d) not in dropped]

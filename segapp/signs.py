"""Signs among a number's digits are no digits: a sign the signs reader is sure of is left out alone, its word kept.

People write numbers with signs among their digits: a date's slashes, a phone number's brackets and dash, a price's
dollar, a share's percent, a reference's hash ("12/05/2026", "(555) 123-4567", "$25.50", "#42"). The net colours
each sign as the digit it looks like (a slash or a bracket as a 1, a plus as a 4, a hash as a 4 or a 7), as sure of
it as of a true digit, and the digit reader, which never saw a sign, agrees. The letters reader
(:mod:`segapp.words`) drops a whole word where it is sure of one letter; a sign must go alone, for the number it
stands in is one word ("12/05/2026").

A signs reader (``segapp train-reader --letters 0.2 --signs 0.15``: weights/signs, :data:`~segapp.reader.SIGN`)
tells a sign from a letter and from a digit by its shape; :func:`segapp.reread.reread` leaves its probability in
``_sign``. A glyph it is sure is a sign (:data:`SIGN_SURE`) is left out before words are judged, so it neither reads
as a digit nor drops its word (a handwritten "#" before its number: the letters readers learned "#" as a letter).
Where the reader is under 0.95 (a typed "+" or "#" at 0.84-0.92) the sign is read as a digit as before.

A slash is a slanted 1 to a reader of crops (0.4-0.7), and a bracket is often a bowed one: only the line tells them
apart. Written among digits, both run from the line's top to below its baseline, where a number's 1 stands on it
(:func:`reaches_past`). So a glyph the signs reader finds a sign at :data:`SIGN_LIKELY` that reaches past its line
so is left out too: two witnesses, as a word needs a likely letter and a lowercase height (:mod:`segapp.words`).
"""

from __future__ import annotations

import numpy as np

from .render import group_lines

SIGN_SURE = 0.95  # the signs reader's probability of a sign at which a glyph is left out alone ...
SIGN_LIKELY = 0.5  # ... and at which it is left out where it also reaches past its line (reaches_past)
REACH = 0.12  # share of the line's other glyphs' median height a glyph's bottom reaches below theirs (its top at or
# above theirs): development seed 102, 60 images in each of 19 categories and 150 signs lines, 2 of 5,029 glyphs of
# numbers read right reach so at SIGN_LIKELY, against 9 of 35 slashes and 15 of 25 brackets read as 1s


def reaches_past(glyph: dict, others: list[dict]) -> bool:
    """Whether ``glyph``'s box stands from at or above its line's ``others``' tops to :data:`REACH` of their height
    below their bottoms (medians; two others at least, or no line to measure)."""
    if len(others) < 2:
        return False
    b = np.array([d["bbox"] for d in others], np.float64)
    height = float(np.median(b[:, 3] - b[:, 1]))
    _, y0, _, y1 = glyph["bbox"]
    return y0 <= float(np.median(b[:, 1])) and y1 - float(np.median(b[:, 3])) >= REACH * height


def drop_signs(digits: list[dict]) -> list[dict]:
    """The digits that are no sign: the signs reader not sure of one (``_sign`` under :data:`SIGN_SURE`), nor
    finding one likely (:data:`SIGN_LIKELY`) that :func:`reaches_past` its line (net-scale boxes); a digit it did
    not read stays. Pops ``_sign`` from all."""
    p = {id(d): d.pop("_sign", 0.0) for d in digits}
    signs = {i for i, q in p.items() if q >= SIGN_SURE}
    if any(SIGN_LIKELY <= q < SIGN_SURE for q in p.values()):
        for line in group_lines(digits):
            signs.update(id(d) for d in line if SIGN_LIKELY <= p[id(d)] < SIGN_SURE
                         and reaches_past(d, [o for o in line if o is not d]))
    return [d for d in digits if id(d) not in signs]

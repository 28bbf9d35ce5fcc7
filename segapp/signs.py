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
as a digit nor drops its word ("#42" reads 42: the letters reader learned "#" as a letter).
"""

from __future__ import annotations

SIGN_SURE = 0.95  # the signs reader's probability of a sign at which a glyph is left out alone


def drop_signs(digits: list[dict]) -> list[dict]:
    """The digits the signs reader is not sure are signs (their ``_sign`` under :data:`SIGN_SURE`; a digit it did
    not read stays); pops ``_sign`` from all."""
    return [d for d in digits if d.pop("_sign", 0.0) < SIGN_SURE]

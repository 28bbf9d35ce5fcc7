"""segapp/words.py: a word with a letter the reader is sure of is not read, the number beside it is."""

import numpy as np
import pytest
import torch

from segapp.inference import InferenceConfig, Segmenter
from segapp.reader import DigitReader, ReaderConfig
from segapp.words import LETTER_GATE, WORD_GAP, drop_words, words


def glyph(x0: int, width: int = 10, top: int = 10, height: int = 20, p_not: float | None = None) -> dict:
    d = {"digit": 0, "confidence": 0.99, "bbox": [x0, top, x0 + width, top + height]}
    if p_not is not None:
        d["_not_digit"] = p_not
    return d


def test_words_are_cut_at_gaps_wider_than_the_word_gap():
    gap = WORD_GAP * 20  # glyphs 20 px tall, 10 wide
    wide, within = int(gap) + 1, int(gap)  # a gap just over the word gap, and one at it
    starts = [0, 12, 22 + wide, 32 + wide + within, 44 + wide + within]
    assert [len(w) for w in words([glyph(x) for x in starts])] == [2, 3]


@pytest.mark.parametrize("sure, kept", [(0, [2, 3]), (2, [0, 1]), (None, [0, 1, 2, 3])])
def test_a_word_with_a_sure_letter_is_dropped_whole_and_the_number_beside_it_stays(sure, kept):
    # "Rm 42": glyphs 0-1 a word, 2-3 a number 20 px to the right
    ds = [glyph(0), glyph(12), glyph(42), glyph(54)]
    for i, d in enumerate(ds):
        d["_not_digit"] = 0.99 if i == sure else 0.5  # unsure glyphs drop nothing
    out = drop_words(ds)
    assert [ds.index(d) for d in out] == kept
    assert all("_not_digit" not in d for d in ds)  # nothing of the rule reaches the output


def test_the_gate_is_inclusive_and_lines_are_words_apart():
    top = [glyph(0, p_not=LETTER_GATE), glyph(12)]  # "k2" on one line ...
    below = [glyph(0, top=60), glyph(12, top=60)]  # ... "42" below it, in the same columns
    assert drop_words(top + below) == below


class Letters(DigitReader):
    """A reader sure that every crop is a letter."""

    def __init__(self):
        super().__init__(ReaderConfig(width=4, classes=11))

    def forward(self, x):
        out = torch.zeros((len(x), 11))
        out[:, 10] = 20.0
        return out


@pytest.mark.parametrize("drop", [True, False])
def test_a_segmenter_whose_reader_sees_letters_reads_nothing_and_colours_nothing(test_split, drop):
    seg = Segmenter("weights", InferenceConfig(backend="torch", drop_words=drop))
    image = test_split[0][0]
    plain = seg(image)
    assert plain.digits
    seg.reader = Letters().eval()
    s = seg(image)
    if drop:
        assert s.text == "" and not s.digits and (s.classes == 10).all()
    else:  # the rule off: the net's reading, whatever the reader thinks
        assert s.text == plain.text and np.array_equal(s.classes, plain.classes)
    assert all("_not_digit" not in d for d in s.digits)

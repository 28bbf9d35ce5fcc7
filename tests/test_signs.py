"""segapp/signs.py and the signs reader: a sign among a number's digits is left out alone, its word kept."""

import numpy as np
import pytest
import torch

from segapp.inference import InferenceConfig, Segmenter
from segapp.model import DEFAULT_WEIGHTS, WeightsError
from segapp.reader import NOT_DIGIT, SIGN, SIGNS_DIR, DigitReader, ReaderConfig, load_signs, read_signs, save_reader
from segapp.signs import REACH, SIGN_LIKELY, SIGN_SURE, drop_signs, reaches_past


class Sure(DigitReader):
    """A twelve-class reader sure that every crop is of class ``what`` (a digit, :data:`NOT_DIGIT` or :data:`SIGN`);
    ``where``: a function of the crop deciding it per crop instead (True: a sign, False: a 3)."""

    def __init__(self, what: int = SIGN, where=None):
        super().__init__(ReaderConfig(width=4, classes=12))
        self.what, self.where = what, where

    def forward(self, x):
        out = torch.zeros((len(x), 12))
        for i in range(len(x)):
            out[i, (SIGN if self.where(x[i]) else 3) if self.where else self.what] = 20.0
        return out


@pytest.mark.parametrize("p, kept", [(SIGN_SURE, False), (SIGN_SURE - 0.01, True), (None, True)])
def test_a_glyph_is_left_out_alone_where_the_signs_reader_is_sure_of_a_sign(p, kept):
    glyphs = [{"digit": 1, "bbox": [0, 0, 5, 20]}, {"digit": 2, "bbox": [8, 0, 18, 20], "_sign": 0.0}]
    if p is not None:
        glyphs[0]["_sign"] = p
    out = drop_signs(glyphs)
    assert [d["digit"] for d in out] == ([1, 2] if kept else [2])  # its neighbour stays either way
    assert all("_sign" not in d for d in glyphs)


def box(x0: int, top: int = 10, bottom: int = 30, p: float | None = None) -> dict:
    d = {"digit": 1, "bbox": [x0, top, x0 + 8, bottom]}
    if p is not None:
        d["_sign"] = p
    return d


@pytest.mark.parametrize("top, bottom, reaches", [
    (10, 30 + int(REACH * 20) + 1, True),  # from the line's top to below its baseline: a slash, a bracket
    (8, 36, True),
    (10, 30 + int(REACH * 20) - 1, False),  # not far enough below
    (12, 36, False),  # below the baseline, but its top under the line's: a digit set low (a 7's descender)
    (10, 30, False),  # a digit standing in its line
])
def test_a_sign_reaches_from_its_lines_top_to_below_its_baseline(top, bottom, reaches):
    line = [box(0), box(12), box(36), box(48)]  # four glyphs 20 px tall, tops at 10
    assert reaches_past(box(24, top, bottom), line) is reaches
    assert reaches_past(box(24, top, bottom), line[:1]) is False  # one neighbour: no line to measure


@pytest.mark.parametrize("p, reaching, kept", [
    (SIGN_LIKELY, True, False), (SIGN_LIKELY - 0.01, True, True), (SIGN_LIKELY, False, True),
    (SIGN_SURE, False, False),
])
def test_a_likely_sign_is_left_out_only_where_it_reaches_past_its_line(p, reaching, kept):
    middle = box(24, 8, 36, p) if reaching else box(24, 10, 30, p)
    glyphs = [box(0), box(12), middle, box(36), box(48)]
    out = drop_signs(glyphs)
    assert len(out) == (5 if kept else 4) and (middle in out) is kept


def test_read_signs_is_the_softmax_of_the_sign_class_over_all_twelve():
    crops = [np.zeros((28, 28), np.float32)] * 3
    assert np.allclose(read_signs(Sure(SIGN).eval(), crops), 1.0)
    assert np.allclose(read_signs(Sure(NOT_DIGIT).eval(), crops), 0.0)  # a letter is no sign
    assert np.allclose(read_signs(Sure(7).eval(), crops), 0.0)


def test_the_signs_folder_must_hold_a_reader_that_knows_signs(tmp_path):
    save_reader(DigitReader(ReaderConfig(width=4, classes=11)), tmp_path / "signs")
    with pytest.raises(WeightsError, match="knows no signs.*--signs") as e:
        load_signs(tmp_path / "signs")
    assert "\n" not in str(e.value)
    save_reader(DigitReader(ReaderConfig(width=4, classes=12)), tmp_path / "signs")
    assert load_signs(tmp_path / "signs").config.classes == 12
    assert load_signs(tmp_path / "none") is None  # no folder: signs are read as the digits they look like


@pytest.mark.parametrize("drop", [True, False])
def test_a_sign_is_left_out_of_the_reading_and_the_mask_and_its_neighbours_stay(test_split, drop):
    image = test_split[0][0]
    seg = Segmenter("weights", InferenceConfig(backend="torch", drop_words=drop))
    plain = seg(image)
    assert len(plain.digits) >= 2
    first = plain.digits[0]["bbox"]  # the leftmost digit, in input pixels; the net's scale is the input's here

    def leftmost(crop: torch.Tensor) -> bool:  # the crop the segmenter reads first is the leftmost digit's
        leftmost.calls += 1
        return leftmost.calls == 1

    leftmost.calls = 0
    seg.signs = Sure(where=leftmost).eval() if drop else None  # (--no-drop-words loads no signs reader)
    seg.letters = None
    s = seg(image)
    if drop:
        assert s.text.replace(" ", "") == plain.text.replace(" ", "")[1:]  # the first glyph alone left out
        assert s.words_left_out == [first]
        x0, y0, x1, y1 = first
        assert (s.classes[y0:y1, x0:x1] == 10).all()  # its pixels out of the mask
    else:
        assert s.text == plain.text
    assert all("_sign" not in d for d in s.digits)


@pytest.mark.parametrize("drop", [True, False])
def test_the_shipped_weights_load_their_signs_reader_only_to_drop_signs(drop):
    seg = Segmenter("weights", InferenceConfig(backend="torch", drop_words=drop))
    assert (seg.signs is not None) == drop
    if drop:
        assert seg.signs.model.config.classes == 12 and (DEFAULT_WEIGHTS / SIGNS_DIR / "args.json").exists()

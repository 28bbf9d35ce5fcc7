"""segapp/signs.py and the signs reader: a sign among a number's digits is left out alone, its word kept."""

import numpy as np
import pytest
import torch

from segapp.inference import InferenceConfig, Segmenter
from segapp.model import WeightsError
from segapp.reader import NOT_DIGIT, SIGN, SIGNS_DIR, DigitReader, ReaderConfig, load_signs, read_signs, save_reader
from segapp.signs import SIGN_SURE, drop_signs


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
    assert (seg.signs is not None) == (drop and (seg.letters is not None) and
                                       load_signs(__import__("pathlib").Path("weights") / SIGNS_DIR) is not None)

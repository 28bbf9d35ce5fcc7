"""segapp/words.py: a word with a letter the reader is sure of is not read, the number beside it is."""

import numpy as np
import pytest
import torch
from imagefiles import MPL_FONTS
from PIL import Image, ImageDraw, ImageFont

from segapp.engines import CropRunner
from segapp.inference import InferenceConfig, Segmenter
from segapp.model import WeightsError
from segapp.reader import DigitReader, ReaderConfig, ReaderEnsemble, load_letters, read_crops, save_reader
from segapp.render import ROW_SHARE
from segapp.words import (
    IN_CONTEXT,
    LETTER_LIKELY,
    LETTER_SURE,
    MIN_GAP,
    SHORT,
    WITNESS,
    WORD_GAP,
    drop_words,
    ink_shapes,
    lettered,
    words,
)


def glyph(x0: int, width: int = 10, top: int = 10, height: int = 20, p_not: float | None = None) -> dict:
    d = {"digit": 0, "confidence": 0.99, "bbox": [x0, top, x0 + width, top + height]}
    if p_not is not None:
        d["_not_digit"] = p_not
    return d


def line(gaps: list[int]) -> list[dict]:
    """Glyphs 20 px tall and 10 wide, left to right, ``gaps`` px apart."""
    x, out = 0, [glyph(0)]
    for g in gaps:
        x += 10 + g
        out.append(glyph(x))
    return out


@pytest.mark.parametrize("gaps, lengths", [
    ([2, int(WORD_GAP * 20) + 1, 20, 2], [2, 1, 2]),  # over the word gap: a space however the line is spaced
    ([int(WORD_GAP * 20)] * 4, [5]),  # evenly spaced at the word gap: one word (a number written wide)
    ([2, 2, 7, 2, 2], [3, 3]),  # a third of the height among glyphs 2 px apart: a typed "Rom 42"'s space
    ([5, 5, 7, 5, 5], [6]),  # ... but not among glyphs 5 px apart (under SPREAD above their median)
    ([int(MIN_GAP * 20), 0, 0, 0], [5]),  # over the median by SPREAD but not over MIN_GAP: no space
    ([7], [2]), ([int(WORD_GAP * 20) + 1], [1, 1]),  # two glyphs: their one gap is its own median
])
def test_words_are_cut_at_gaps_wide_against_the_line_or_against_its_other_gaps(gaps, lengths):
    assert [len(w) for w in words(line(gaps))] == lengths


@pytest.mark.parametrize("drop, lengths", [(0, [2]), (int(20 * ROW_SHARE) - 1, [2]), (int(20 * ROW_SHARE) + 1, [1, 1])])
def test_close_glyphs_that_share_too_few_rows_are_no_word(drop, lengths):
    """Two digits 2 px apart, the second ``drop`` px lower (both 20 px tall): a word's letters share their line's
    band, a number's digits may wander out of it (two rows of clean digits, one a third of a height below the
    other, were left out as a word at seed 110). A lowercase letter beside a capital shares all its rows."""
    assert [len(w) for w in words([glyph(0), glyph(12, top=10 + drop)])] == lengths
    lower = [glyph(0), glyph(12, top=10 + 20 - 9, height=9)]  # "Rm": the m's 9 px all within the R's rows
    assert [len(w) for w in words(lower)] == [2]


@pytest.mark.parametrize("sure, kept", [(0, [2, 3]), (2, [0, 1]), (None, [0, 1, 2, 3])])
def test_a_word_with_a_sure_letter_is_dropped_whole_and_the_number_beside_it_stays(sure, kept):
    # "Rm 42": glyphs 0-1 a word, 2-3 a number 20 px to the right, all as tall
    ds = [glyph(0), glyph(12), glyph(42), glyph(54)]
    for i, d in enumerate(ds):
        d["_not_digit"] = LETTER_SURE if i == sure else 0.9  # fairly sure glyphs of even height drop nothing
    out = drop_words(ds)
    assert [ds.index(d) for d in out] == kept
    assert all("_not_digit" not in d for d in ds)  # nothing of the rule reaches the output


@pytest.mark.parametrize("p, short, dropped", [(LETTER_LIKELY, True, True), (LETTER_LIKELY - 0.01, True, False),
                                                (LETTER_SURE - 0.01, False, False), (LETTER_SURE, False, True)])
def test_a_fairly_sure_letter_drops_its_word_only_beside_a_lowercase_height(p, short, dropped):
    low = int(20 * SHORT) - 1 if short else 20  # "Rm": the m a lowercase letter's height, or as tall as the R
    word = [glyph(0, p_not=p), glyph(12, top=10 + 20 - low, height=low, p_not=0.0)]
    assert lettered([p, 0.0], [20, low], 20) == dropped
    assert drop_words(word + [glyph(42), glyph(54)]) == ([] if dropped else word) + [glyph(42), glyph(54)]


def test_the_gate_is_inclusive_and_lines_are_words_apart():
    top = [glyph(0, p_not=LETTER_SURE), glyph(12)]  # "k2" on one line ...
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
@pytest.mark.parametrize("where", ["letters", "reader"])
def test_a_segmenter_whose_reader_sees_letters_reads_nothing_and_colours_nothing(test_split, drop, where):
    seg = Segmenter("weights", InferenceConfig(backend="torch", drop_words=drop))
    seg.letters = None
    image = test_split[0][0]
    plain = seg(image)
    assert plain.digits
    if drop or where == "reader":  # (--no-drop-words loads no letters reader)
        setattr(seg, where, Letters().eval())  # weights/letters, or a reader trained with letters as weights/reader
    s = seg(image)
    if drop:
        assert s.text == "" and not s.digits and (s.classes == 10).all()
        assert len(s.words_left_out) == len(plain.digits)  # each glyph left out, where it stood
        h, w = image.shape[:2]
        assert all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for x0, y0, x1, y1 in s.words_left_out)
        assert s.summary()["words_left_out"] == s.words_left_out
    else:  # the rule off: the net's reading, whatever the reader thinks
        assert s.text == plain.text and np.array_equal(s.classes, plain.classes)
    assert all("_not_digit" not in d for d in s.digits)


def test_the_letters_folder_must_hold_a_reader_that_knows_letters(tmp_path):
    save_reader(DigitReader(ReaderConfig(width=4)), tmp_path / "letters")
    with pytest.raises(WeightsError, match="knows digits only.*--letters") as e:
        load_letters(tmp_path / "letters")
    assert "\n" not in str(e.value)
    save_reader(DigitReader(ReaderConfig(width=4, classes=11)), tmp_path / "letters")
    assert load_letters(tmp_path / "letters").config.classes == 11
    assert load_letters(tmp_path / "none") is None  # no folder: words are read as digits


def test_a_letters_folder_of_readers_is_one_reader_averaging_their_probabilities(tmp_path):
    torch.manual_seed(0)
    members = [DigitReader(ReaderConfig(width=w, classes=11)).eval() for w in (4, 6)]  # widths may differ
    with torch.no_grad():
        members[1].head[1].bias[10] += 2.0  # the second far surer of "not a digit" than the first
    for name, r in zip(("b", "a"), members):
        save_reader(r, tmp_path / "letters" / name)
    both = load_letters(tmp_path / "letters")
    assert isinstance(both, ReaderEnsemble) and [r.config.width for r in both.readers] == [6, 4]  # name order
    crops = [np.random.default_rng(k).random((28, 28), np.float32) for k in range(5)]
    digits, p_not = read_crops(both, crops)
    alone = [read_crops(r, crops) for r in members]
    assert np.allclose(p_not, np.mean([q for _, q in alone], 0), atol=1e-5)  # the mean "not a digit"
    assert np.allclose(digits.sum(1), 1) and not np.allclose(p_not, alone[0][1], atol=0.1)
    with torch.inference_mode():  # and it runs as one ONNX graph after the warm-up, reading the same
        run, x = CropRunner(both), torch.rand(3, 1, 28, 28)
        want, outs = both(x), [run(x) for _ in range(CropRunner.WARM + 1)]
    assert run.session is not None and all(torch.allclose(o.float(), want, atol=1e-4) for o in outs)
    save_reader(DigitReader(ReaderConfig(width=4)), tmp_path / "letters" / "c")  # a digits-only member: named
    with pytest.raises(WeightsError, match=f"{tmp_path / 'letters' / 'c'}.*knows digits only"):
        load_letters(tmp_path / "letters")
    save_reader(DigitReader(ReaderConfig(width=4, classes=11)), tmp_path / "letters")  # a reader of its own:
    assert type(load_letters(tmp_path / "letters")) is DigitReader  # that one, as before ensembles
    (tmp_path / "empty").mkdir()
    assert load_letters(tmp_path / "empty") is None


@pytest.mark.parametrize("drop", [True, False])
def test_the_shipped_weights_come_with_a_letters_reader_loaded_only_to_drop_words(drop):
    seg = Segmenter("weights", InferenceConfig(backend="torch", drop_words=drop))
    assert (seg.letters is not None) == drop


def test_the_letters_reader_moves_to_onnx_runtime_after_its_warm_up_and_reads_the_same():
    torch.manual_seed(0)
    reader = DigitReader(ReaderConfig(width=4, classes=11)).eval()
    run = CropRunner(reader)
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        want = reader(x)
        outs = [run(x) for _ in range(CropRunner.WARM + 1)]
    assert run.session is not None  # exported once, at the WARM-th call
    assert all(torch.allclose(o.float(), want, atol=1e-4) for o in outs)
    assert run(torch.rand(7, 1, 28, 28)).shape == (7, 11)  # any number of crops


@pytest.fixture(scope="module")
def shipped() -> Segmenter:
    return Segmenter("weights")


def typed(text: str, size: int = 44) -> np.ndarray:
    """``text`` typed in matplotlib's DejaVu Sans (on every machine segapp runs), dark on light paper."""
    font = ImageFont.truetype(str(MPL_FONTS / "DejaVuSans.ttf"), size)
    image = Image.new("L", (int(font.getlength(text)) + 40, size + 30), 235)
    ImageDraw.Draw(image).text((20, 10), text, fill=30, font=font)
    return np.asarray(image)


@pytest.mark.parametrize("text, number", [("Box 7", "7"), ("Fax 2356", "2 3 5 6"), ("Flat 9", "9"),
                                          ("Page 31", "3 1"), ("12 kWh", "1 2"), ("Seat 146", "1 4 6")])
def test_the_shipped_readers_leave_a_typed_word_out_and_read_the_number_beside_it(shipped, text, number):
    # the shipped weights end to end: every one of these words' letters is some stroke the net colours as a digit
    seg = shipped
    assert seg(typed(text)).text == number
    assert len(seg.with_options(drop_words=False)(typed(text)).text.split()) > len(number.split())


def leaning(x0: int, lean: int = 10, top: int = 10, height: int = 20, width: int = 4) -> dict:
    """A glyph whose stroke leans right by ``lean`` px over its ``height`` (an italic stem), its ink as
    :func:`segapp.words.ink_shapes` leaves it."""
    hull = np.array([[x0, top + height], [x0 + width, top + height], [x0 + lean + width, top], [x0 + lean, top]])
    return {"digit": 1, "confidence": 0.99, "bbox": [x0, top, x0 + lean + width, top + height],
            "_hull": hull, "_slant": lean / height}


def test_an_italic_lines_space_is_measured_along_its_lean():
    # boxes 3 px apart (0.15 of the height: one word by boxes); along the lean the stems stand 13 px apart
    line = [leaning(0), leaning(17)]
    upright = [{k: v for k, v in d.items() if k not in ("_hull", "_slant")} for d in line]
    assert [len(w) for w in words(upright)] == [2]
    assert [len(w) for w in words(line)] == [1, 1]


def test_ink_shapes_measures_a_digits_lean_and_hull_on_its_own_pixels():
    classes = np.full((30, 40), 10, np.uint8)
    for y in range(5, 25):  # a 2 px stroke leaning right by 0.5 px per row, and a neighbour's overhang (class 7)
        x = 10 + (25 - y) // 2
        classes[y, x : x + 2] = 3
    classes[5:8, 22:24] = 7
    d = {"digit": 3, "bbox": [10, 5, 24, 25]}
    ink_shapes([d], classes)
    assert d["_slant"] == pytest.approx(0.5, abs=0.05)
    assert d["_hull"][:, 0].max() <= 21 and d["_hull"][:, 1].min() == 5  # the overhang is not its ink


@pytest.mark.parametrize("p_not, p_letter, dropped", [
    ([WITNESS, 0.1], [IN_CONTEXT, IN_CONTEXT], True),  # two witnesses: a letter and a word of letters
    ([WITNESS - 0.01, 0.1], [1.0, 1.0], False),  # the context reader alone (a typed number beside a word)
    ([WITNESS, 0.1], [IN_CONTEXT, IN_CONTEXT - 0.02], False),  # the word's mean under IN_CONTEXT
    ([LETTER_LIKELY], [1.0], False),  # a lone glyph: the letters reader's own rule
    ([WITNESS, 0.1], None, False),  # no context reader: the rule as before (under LETTER_LIKELY: kept)
])
def test_a_word_the_context_reader_finds_letters_is_dropped_with_a_second_witness(p_not, p_letter, dropped):
    assert lettered(p_not, [20] * len(p_not), 20, p_letter) == dropped


def test_drop_words_hands_each_lines_context_probabilities_to_the_rule():
    line = [glyph(0, p_not=0.7), glyph(12, p_not=0.1), glyph(40), glyph(52)]  # "oo" apart from "42"
    for d, q in zip(line, (0.9, 0.9, 0.1, 0.2)):
        d["_letter"] = q
    kept = drop_words(line)
    assert [d["bbox"][0] for d in kept] == [40, 52] and not any("_letter" in d for d in kept)


@pytest.mark.parametrize("text, size", [("Tel 349 mm", 32), ("Sold 42 lots", 44), ("Size 40 cm", 44),
                                        ("pages 12", 32)])
def test_the_shipped_context_reader_leaves_letters_out_and_a_typed_number_in(shipped, text, size):
    # "Tel" / "mm" / "Sold" / "lots" are read as digits without it; "40" and "12" are typed digits it alone would
    # take for letters (the second witness keeps them)
    number = " ".join(c for c in text if c.isdigit())
    assert shipped(typed(text, size)).text == number

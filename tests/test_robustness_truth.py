"""The robustness benchmark's true texts: one entry per digit placed, whatever its number of pieces."""

import io

import numpy as np
import pytest

from benchmarks.robustness import canvases
from segapp.m2nist import compose


def _pool(digit: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
    return digit[None].astype(np.uint8), np.array([label])


def test_canvases_are_the_m2nist_recipe_byte_for_byte():
    rng = np.random.default_rng(0)
    digits, labels = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8), rng.integers(0, 10, 30)
    digits[digits < 180] = 0
    images, masks, texts = canvases(12, np.random.default_rng(5), pool=(digits, labels))
    want_images, want_masks = compose(digits, labels, 12, np.random.default_rng(5))
    assert np.array_equal(images, want_images) and np.array_equal(masks, want_masks)
    assert all(len(t.split()) in (2, 3) for t in texts)  # 84 px: two slots always fit, a third when x lands at 56


@pytest.mark.parametrize("spacing, expected", [(40, 3), (20, 5)])
def test_a_digit_in_two_pieces_is_one_digit_and_touching_digits_are_two(spacing, expected):
    five = np.zeros((28, 28), np.uint8)
    five[4:8, 8:20] = 255  # a bar lifted off the body: its own connected piece
    five[11:24, 6:22] = 255  # the body: 16 px wide, so at spacing 20 neighbours' bodies do not touch...
    if spacing == 20:
        five[11:24, 2:26] = 255  # ...unless 24 px wide: then neighbours touch and form one connected piece
    _, masks, texts = canvases(4, np.random.default_rng(1), width=124, spacing=spacing, pool=_pool(five, 5))
    assert texts == [" ".join(["5"] * expected)] * 4
    assert (masks == 5).any()


def test_a_number_on_squared_paper_keeps_its_labels_on_its_ink_and_the_rules_are_background():
    from benchmarks import handwriting
    from segapp.classes import BACKGROUND

    rng = np.random.default_rng(4)
    ink, lab, text = handwriting.real_number(rng, 30.0, "dev")
    rgb, pad_ink, pad_lab = handwriting.squared_paper(ink, lab, 30.0, rng)
    assert rgb.shape[:2] == pad_ink.shape == pad_lab.shape and rgb.shape[0] > ink.shape[0]
    assert (pad_lab != BACKGROUND).sum() == (lab != BACKGROUND).sum()  # padding adds only paper
    gray = rgb.mean(2)
    margin = gray[:, :10].mean(1)  # the left margin holds no ink; horizontal rules cross it
    assert margin.max() - margin.min() > 8  # bare paper's grain averages out to ~1 grey level over 10 px
    assert gray[pad_ink >= handwriting.EDGE].mean() < gray[pad_lab == BACKGROUND].mean() - 60  # ink is darkest


def test_the_single_digit_set_holds_one_digit_per_image_of_both_kinds_and_both_looks():
    from benchmarks.robustness import CATEGORIES, build
    from segapp.classes import BACKGROUND, VOID

    items = build("single", 8, np.random.default_rng([100, CATEGORIES.index("single")]))
    assert all(len(text) == 1 and text.isdigit() for _, _, _, text in items)
    assert [ext for _, ext, _, _ in items] == ["png", "png", "jpg", "jpg"] * 2  # white on black, photographed
    assert all(set(np.unique(lab)) - {BACKGROUND, VOID} == {int(text)} for _, _, lab, text in items)



def test_lines_of_words_alone_hold_ink_and_nothing_to_read():
    """``words_only``: the word lines with their number left out, both makers, both looks; the truth is no digit."""
    from PIL import Image

    from benchmarks.robustness import CATEGORIES, build
    from segapp.classes import BACKGROUND

    items = build("words_only", 4, np.random.default_rng([100, CATEGORIES.index("words_only")]))
    assert [ext for _, ext, _, _ in items] == ["png", "jpg", "png", "jpg"] and all(t == "" for *_, t in items)
    assert all((lab == BACKGROUND).all() for _, _, lab, _ in items)
    for data, ext, _, _ in items:  # ink drawn: white on black, or dark on a photographed page
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
        assert gray.max() > 128 if ext == "png" else gray.min() < np.median(gray) - 60

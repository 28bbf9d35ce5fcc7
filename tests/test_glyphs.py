"""Letters and signs the net learns to leave as background (segapp.glyphs, synth's --letters share)."""

import numpy as np
import pytest
from imagefiles import MPL_FONTS

from segapp.classes import BACKGROUND, VOID
from segapp.glyphs import GLYPHS, SIGN_GLYPHS, TALL_SIGNS, draw_glyph, font_files, pick_glyph
from segapp.m2nist import digit_pool
from segapp.synth import WildConfig, wild_sample

# every glyph some hand writes a digit as: training them as background would teach the net to drop those digits
DIGIT_LIKE = "0123456789OoDQIlijLJT!()/ZzSs$bGecCB&gqaPpyAt+YuUvV"


@pytest.fixture(scope="module")
def digits():
    return digit_pool("train")


def test_no_glyph_is_written_like_a_digit():
    assert GLYPHS and not set(GLYPHS) & set(DIGIT_LIKE)


@pytest.mark.parametrize("ch", list(GLYPHS))
def test_each_glyph_draws_as_cropped_white_on_black_ink(ch):
    g = draw_glyph(ch, np.random.default_rng(3))
    assert g.dtype == np.uint8 and g.max() == 255
    assert g[0].any() and g[-1].any() and g[:, 0].any() and g[:, -1].any()  # cropped to its ink


def test_font_files_finds_the_fonts_in_a_folder_and_names_a_folder_without_any(tmp_path):
    files = font_files((str(MPL_FONTS), str(MPL_FONTS / "DejaVuSans.ttf")))
    assert str(MPL_FONTS / "DejaVuSans.ttf") in files and len(files) == len(set(files)) > 5  # once each, sorted
    assert list(files) == sorted(files)
    with pytest.raises(ValueError, match=f"{tmp_path}: no .ttf or .otf"):
        font_files((str(tmp_path),))


def test_letters_from_font_files_come_in_other_shapes_and_no_fonts_keeps_the_stream():
    fonts = font_files((str(MPL_FONTS / "DejaVuSerif.ttf"),))
    plain = [draw_glyph("R", np.random.default_rng(k)) for k in range(12)]
    assert all(np.array_equal(g, draw_glyph("R", np.random.default_rng(k), ())) for k, g in enumerate(plain))
    with_fonts = [draw_glyph("R", np.random.default_rng(k), fonts) for k in range(12)]
    other = [g for g, p in zip(with_fonts, plain) if g.shape != p.shape or not np.array_equal(g, p)]
    assert 2 <= len(other) <= 11  # about half drawn in the serif face, the rest in OpenCV's
    assert all(g.dtype == np.uint8 and g.max() == 255 and g[0].any() and g[:, 0].any() for g in other)


def test_capitals_stand_as_tall_as_digits_and_smaller_glyphs_sit_within_them():
    drawn = [pick_glyph(np.random.default_rng(k))[1:] for k in range(60)]
    assert all(0.4 <= share <= 1.05 and 0 <= drop <= max(0.0, 1 - share) + 1e-9 for share, drop in drawn)
    assert any(share >= 0.85 and drop == 0 for share, drop in drawn)  # capitals from the digits' top
    assert any(share <= 0.7 and abs(drop - (1 - share)) < 1e-9 for share, drop in drawn)  # lowercase on the baseline


def test_letter_runs_draw_two_or_three_letters_of_one_case_and_zero_keeps_the_stream():
    # --letter-runs: a font's close letters ("eat") reach the net as one glyph, so the reader learns such crops
    for k in range(20):  # runs 0: the very same glyphs as before the option existed, random stream included
        a, b = np.random.default_rng(k), np.random.default_rng(k)
        assert np.array_equal(pick_glyph(a, "kmx")[0], pick_glyph(b, "kmx", (), 0.0)[0]) and a.random() == b.random()
    singles = [pick_glyph(np.random.default_rng(k), "kmx")[0] for k in range(20)]
    runs = [pick_glyph(np.random.default_rng(k), "kmxEF", (), 1.0) for k in range(40)]
    lower = [g for g, share, _ in runs if share <= 0.7]  # lowercase runs sit on the baseline like one lowercase letter
    wide = lambda gs: np.array([g.shape[1] / g.shape[0] for g in gs])  # noqa: E731
    assert lower and np.median(wide(lower)) > 1.5 * np.median(wide(singles))  # an "m" alone is 1.6 wide, "kxm" 2.9
    assert wide(lower).min() > np.median(wide(singles))
    assert all(g.dtype == np.uint8 and g.max() == 255 and g[0].any() and g[:, -1].any() for g, _, _ in runs)


def test_tall_signs_reach_a_digits_height_and_below_its_baseline_other_signs_sit_within_it():
    # a slash, a bracket, a dollar are written as tall as a digit or taller (the signs reader learns them so)
    for ch in SIGN_GLYPHS:
        drawn = [pick_glyph(np.random.default_rng(k), ch)[1:] for k in range(30)]
        if ch in TALL_SIGNS:
            assert all(0.95 <= share <= 1.25 and -0.1 <= drop and share + drop <= 1.2 + 1e-9 for share, drop in drawn)
            assert any(share + drop > 1.05 for share, drop in drawn)  # below the baseline
        else:
            assert all(0.4 <= share <= 0.75 and 0 <= drop <= 1 - share + 1e-9 for share, drop in drawn)


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_signs_are_drawn_with_their_own_label_and_zero_keeps_the_stream(digits, share):
    cfg = dict(letters=0.2, letter_label=11, photo=0.0, blank=0.0, resample=0.0)
    signed = 0
    for k in range(12):
        image, label = wild_sample(np.random.default_rng(k), *digits, WildConfig(**cfg, signs=share, sign_label=12))
        plain = wild_sample(np.random.default_rng(k), *digits, WildConfig(**cfg))
        if share == 0:
            assert np.array_equal(image, plain[0]) and np.array_equal(label, plain[1])
        signed += int((label == 12).sum())
    assert (signed > 100) == (share > 0)


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_letters_put_ink_where_the_labels_say_background(digits, share):
    # At 0 the recipe draws no glyph and no random number for it (the shipped stages' stream); at a share, some
    # images hold ink that no digit label covers: letters the net must leave as background.
    cfg = WildConfig(letters=share, photo=0.0, blank=0.0, resample=0.0)
    unlabelled = 0
    for k in range(12):
        image, label = wild_sample(np.random.default_rng(k), *digits, cfg)
        plain_image, plain_label = wild_sample(np.random.default_rng(k), *digits, WildConfig(photo=0.0, blank=0.0,
                                                                                              resample=0.0))
        if share == 0:
            assert np.array_equal(image, plain_image) and np.array_equal(label, plain_label)
        unlabelled += int(((image > 0.5) & (label == BACKGROUND)).sum())
    assert (unlabelled > 100) == (share > 0)


@pytest.mark.parametrize("category", ["words", "words_natural", "signs"])
def test_the_words_and_signs_sets_label_digits_only_and_leave_the_rest_background(category):
    import io

    from PIL import Image

    from benchmarks.robustness import CATEGORIES, build

    items = build(category, 6, np.random.default_rng([100, CATEGORIES.index(category)]))
    assert [ext for _, ext, _, _ in items] == ["png", "jpg"] * 3
    for data, ext, lab, text in items:
        assert text.replace(" ", "").isdigit()
        assert set(np.unique(lab)) - {BACKGROUND, VOID} == set(map(int, text.split()))
        if ext == "png":
            ink = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
            assert ((ink > 128) & (lab == BACKGROUND)).sum() > 30  # the words' strokes


def test_natural_lines_set_a_word_closer_to_its_number_than_the_words_set_does():
    # the font's own space (a quarter to one digit's height, ink to ink) against words_number's half a digit's height
    # and two gaps more
    from benchmarks.wordlines import words_natural, words_number

    def space(make, seed):
        ink, lab, words, text = make(np.random.default_rng(seed), 40.0, "dev")
        digit_cols = np.nonzero((lab < 10).any(0))[0]
        word_cols = np.nonzero((words > 64).any(0))[0]
        left = word_cols[word_cols < digit_cols.min()]
        return digit_cols.min() - left.max() if len(left) else None  # the space before the number

    natural = [g for g in (space(words_natural, k) for k in range(40)) if g is not None]
    spaced = [g for g in (space(words_number, k) for k in range(40)) if g is not None]
    assert len(natural) > 10 and len(spaced) > 10
    assert np.median(natural) < 0.75 * np.median(spaced) and np.mean(np.array(natural) < 0.5 * 40) > 0.3


"""Other writers from MNIST's digits (segapp.strokes) and the blank pages of the real-world generator."""

import cv2
import numpy as np
import pytest

from segapp.classes import BACKGROUND
from segapp.m2nist import digit_pool
from segapp.strokes import _lift, _swell, hook, open_loop, pointed, repen, restyle, thin
from segapp.synth import WildConfig, glyph_patch, wild_sample


def test_thinning_leaves_a_one_pixel_connected_skeleton():
    bar = np.zeros((20, 30), bool)
    bar[8:13, 3:27] = True  # a stroke 5 px wide
    skel = thin(bar)
    assert skel.any() and (skel.sum(0)[6:24] == 1).all()  # one pixel per column along the stroke
    assert cv2.connectedComponents(skel.astype(np.uint8))[0] == 2  # background + one piece
    assert not (skel & ~bar).any()


@pytest.fixture(scope="module")
def digits():
    d, labels = digit_pool("train")
    return d[:200], labels[:200]


def _crop(d28: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(d28 > 0)
    return d28[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0


def test_repen_keeps_the_shape_and_changes_the_pen(digits):
    """The re-drawn digit follows the original's skeleton; its stroke width varies from digit to digit."""
    widths, kept = [], []
    for k in range(40):
        d = _crop(digits[0][k])
        p = repen(d, np.random.default_rng(k))
        assert p.dtype == np.float32 and 0 <= p.min() and 0.3 < p.max() <= 1  # a fine liner at 20 px is faint
        assert abs(p.shape[0] - d.shape[0]) <= max(3, 0.3 * d.shape[0])  # the same digit height, give or take a nib
        bone = thin(d > 0.45)
        h, w = min(p.shape[0], d.shape[0]), min(p.shape[1], d.shape[1])
        near = cv2.dilate((p > 0.2).astype(np.uint8), np.ones((5, 5), np.uint8))[:h, :w].astype(bool)
        kept.append((near & bone[:h, :w]).sum() / max(bone[:h, :w].sum(), 1))
        widths.append((p > 0.25).sum() / max(thin(p > 0.25).sum(), 1))
    assert np.median(kept) > 0.8
    assert max(widths) > 2 * min(widths)


@pytest.mark.parametrize("seed", range(6))
def test_a_pressure_pen_swells_to_the_full_nib_and_thins_to_a_hairline_along_one_stroke(seed):
    skel = np.zeros((60, 30), np.uint8)
    skel[5:55, 15] = 1  # one vertical stroke, drawn with a 7 px nib
    ink = cv2.dilate(skel, np.ones((7, 7), np.uint8)).astype(np.float32)
    out = _swell(ink, skel, 7.0, np.random.default_rng(seed))
    width = (out[5:55] > 0.5).sum(1)  # px across the stroke, row by row
    assert width.max() == 7 and width.min() == 1  # full nib somewhere, a hairline elsewhere on the same stroke
    assert (out[skel.astype(bool)] >= 1).all() and (out <= ink).all()  # never broken, never wider than the nib


def test_the_wild_recipe_draws_some_digits_with_a_pressure_pen(digits):
    """repen(swell=1) gives strokes of uneven width where swell=0 keeps the nib even (same skeleton, same pen)."""
    ratios = {0.0: [], 1.0: []}
    for k in range(30):
        d = _crop(digits[0][k])
        for swell in ratios:
            p = repen(d, np.random.default_rng(k), 0.0, swell)
            ratios[swell].append((p > 0.25).sum() / max(thin(p > 0.25).sum(), 1))
    assert np.median(ratios[1.0]) < np.median(ratios[0.0])  # hairlines: fewer pixels per pixel of skeleton


def test_a_pen_lift_opens_a_loop_but_never_splits_a_digit():
    ring = np.zeros((40, 40), np.uint8)
    cv2.circle(ring, (20, 20), 14, 1, 1)  # the skeleton of an 0: one closed loop
    stroke = np.zeros((40, 40), np.uint8)
    stroke[5:35, 20] = 1  # the skeleton of a 1: cutting its middle would leave two pieces
    opened = 0
    for k in range(20):
        cut = _lift(ring.astype(bool), 2.0, 40, np.random.default_rng(k))
        assert cut.sum() < ring.sum() and cv2.connectedComponents(cut.astype(np.uint8))[0] == 2  # still one piece
        holes = cv2.connectedComponents((~cut).astype(np.uint8), connectivity=4)[0] - 1
        opened += holes == 1  # the loop no longer encloses anything
        one = _lift(stroke.astype(bool), 2.0, 40, np.random.default_rng(k))
        assert cv2.connectedComponents(one.astype(np.uint8))[0] == 2
    assert opened == 20


def _pieces_and_holes(d: np.ndarray) -> tuple[int, int]:
    """(pieces of ink, holes in it): the paper padded round so that the outside is one region."""
    ink = (d > 0.45).astype(np.uint8)
    paper = np.pad(1 - ink, 1, constant_values=1)
    return cv2.connectedComponents(ink)[0] - 1, cv2.connectedComponents(paper, connectivity=4)[0] - 2


def test_an_open_nine_loses_its_loop_keeps_its_stem_and_stays_one_piece():
    nine = np.zeros((28, 18), np.float32)
    cv2.circle(nine, (8, 8), 6, 1.0, 2)  # the loop
    nine[8:28, 13:15] = 1.0  # the stem down from its right side
    assert _pieces_and_holes(nine) == (1, 1)
    for k in range(10):
        opened = open_loop(nine, np.random.default_rng(k))
        assert _pieces_and_holes(opened) == (1, 0)  # open, and still one piece
        assert np.array_equal(opened[:, 12:], nine[:, 12:])  # the stem and the loop's right side are untouched
        assert not (opened != nine).any(1)[:6].any()  # the loop's top is kept: the cut is below it
    one = np.zeros((28, 8), np.float32)
    one[2:26, 3:5] = 1.0
    assert np.array_equal(open_loop(one, np.random.default_rng(0)), one)  # no loop: nothing to open


@pytest.mark.parametrize("seed", range(5))
def test_a_hooked_stem_curls_left_at_its_foot_only(seed):
    stem = np.zeros((30, 6), np.float32)
    stem[:, 2:4] = 1.0
    curled = hook(stem, np.random.default_rng(seed))
    assert curled.shape[0] == 30 and _pieces_and_holes(curled) == (1, 0)  # as tall, still one stroke
    x = [np.flatnonzero(row > 0.45).mean() for row in (curled[0], curled[14], curled[29])]
    assert x[0] == x[1]  # the upper half is where it was
    assert x[0] - x[2] >= 0.15 * 30 - 1  # the foot swings left by 15-40% of the height


def test_restyle_closes_an_open_four():
    four = np.zeros((24, 20), np.float32)
    four[0:14, 3:5] = 1  # left arm
    four[12:14, 3:18] = 1  # bar
    four[0:24, 13:15] = 1  # stem: the top is open between the arms
    closed = restyle(four, 4, np.random.default_rng(0))
    top = closed[:3] > 0.5  # the first rows of ink (restyle crops to the ink)
    runs = np.flatnonzero(np.diff(np.r_[0, top.any(0).astype(int), 0]))
    assert len(runs) // 2 == 1  # one run of ink across the top: the arms are joined
    assert np.array_equal(restyle(four, 3, np.random.default_rng(0)), four[:, 3:18])  # other digits: unchanged


@pytest.mark.parametrize("seed", range(5))
def test_a_closed_four_has_a_bar_crossing_its_stem(seed):
    """Closed but with its bar ending at the stem, a 4 is a square-topped 9: the recipe must not teach that."""
    four = np.zeros((24, 20), np.float32)
    four[0:14, 3:5] = 1  # left arm
    four[12:14, 3:15] = 1  # bar, ending at the stem as in most MNIST 4s
    four[0:24, 13:15] = 1  # stem
    closed = restyle(four, 4, np.random.default_rng(seed))
    stem = np.flatnonzero(closed[-4:].max(0) > 0.5)  # the stem alone reaches the bottom rows
    bar = np.flatnonzero(closed[11:15].max(0) > 0.5)
    assert bar.max() >= stem.max() + 3  # the bar crosses the stem by more than a stroke width


@pytest.mark.parametrize("seed", range(4))
def test_a_pointed_four_is_a_triangle_over_a_stem_with_its_bar_across(seed):
    four = np.zeros((24, 20), np.float32)
    four[0:14, 3:5] = 1  # left arm
    four[12:14, 3:15] = 1  # bar, ending at the stem
    four[0:24, 13:15] = 1  # stem
    p = pointed(four, np.random.default_rng(seed))
    assert (p > 0.5).any(1).sum() in (24, 25) and _pieces_and_holes(p) == (1, 1)  # as tall (+1: a round cap); one hole
    stem = np.flatnonzero(p[-4:].max(0) > 0.5)
    bar_row = 12 + int(np.argmax((p[10:16] > 0.5).sum(1))) - 2
    widths = [np.ptp(np.flatnonzero(p[r] > 0.5)) for r in (2, 6, bar_row - 2)]
    assert widths[0] < widths[1] < widths[2]  # the triangle widens downwards from the stem's top (no square top)
    assert np.flatnonzero(p[bar_row - 1 : bar_row + 2].max(0) > 0.5).max() >= stem.max() + 2  # the bar crosses
    stem_alone = four[:, 13:15]
    assert np.array_equal(pointed(stem_alone, np.random.default_rng(seed)), np.pad(stem_alone, 8))  # no arms: kept


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_recipe_draws_pointed_fours_only_when_asked(share):
    four = np.zeros((28, 28), np.uint8)
    four[4:16, 7:9] = 255  # an open MNIST-like 4: left arm, bar ending at the stem, stem
    four[14:16, 7:19] = 255
    four[4:24, 17:19] = 255
    still = dict(rotate=0.0, slant=0.0, aspect=(0.0, 0.0), elastic=0.0, repen=0.0, thicken=0.0, thin=0.0)
    patch = glyph_patch(four, 20.0, np.random.default_rng(0), WildConfig(styled=1.0, pointed_four=share, **still), 4)
    rows = [r for r in patch if (r > 0.5).any()]
    top = np.ptp(np.flatnonzero(rows[1] > 0.5))  # the second row of ink: the stem's tip, or a square's whole top
    assert (top <= 4) == (share == 1.0)


def test_blank_training_images_are_all_background(digits):
    cfg = WildConfig(blank=1.0)
    for k in range(10):
        image, label = wild_sample(np.random.default_rng(k), *digits, cfg)
        assert image.shape == label.shape == (cfg.height, cfg.width)
        assert (label == BACKGROUND).all()


@pytest.mark.parametrize("aspect, lo, hi", [((-0.6, -0.6), 0.45, 0.65), ((0.3, 0.3), 1.2, 1.5)])
def test_narrow_and_wide_hands_change_a_digits_width_not_its_height(digits, aspect, lo, hi):
    from segapp.synth import glyph_patch

    plain = dict(slant=0.0, rotate=0.0, elastic=0.0, repen=0.0, styled=0.0, thicken=0.0, thin=0.0)
    d28 = digits[0][3]

    def box(cfg: WildConfig) -> tuple[int, int]:
        ys, xs = np.nonzero(glyph_patch(d28, 20.0, np.random.default_rng(0), cfg) > 0.25)
        return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1

    (h0, w0), (h1, w1) = box(WildConfig(aspect=(0.0, 0.0), **plain)), box(WildConfig(aspect=aspect, **plain))
    assert abs(h1 - h0) <= 1 and lo <= w1 / w0 <= hi


def test_ruled_paper_under_a_number_changes_the_picture_never_the_labels(digits):
    ruled, bare = WildConfig(photo=1.0, blank=0.0, ruled=1.0), WildConfig(photo=1.0, blank=0.0, ruled=0.0)
    for k in range(4):
        image, label = wild_sample(np.random.default_rng(k), *digits, ruled)
        plain_image, plain_label = wild_sample(np.random.default_rng(k), *digits, bare)
        assert np.array_equal(label, plain_label)  # the layout is drawn before the paper
        assert not np.array_equal(image, plain_image)


def test_a_notebook_page_has_straight_rules_a_net_pixel_or_two_wide():
    from segapp.synth import _rules

    for k in range(6):
        page = _rules(64, 84, np.random.default_rng(k))
        assert 0.0 <= page.min() and page.max() <= 0.6
        lit = page > 0.05
        rows = lit.mean(1)  # a horizontal rule lights most of its row (a little askew: a few px of it drift away)
        assert rows.max() > 0.5 and 0.02 < lit.mean() < 0.6

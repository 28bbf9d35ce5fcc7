"""Other writers from MNIST's digits (segapp.strokes) and the blank pages of the real-world generator."""

import cv2
import numpy as np
import pytest

from segapp.classes import BACKGROUND
from segapp.m2nist import digit_pool
from segapp.strokes import lift, repen, restyle, thin
from segapp.synth import WildConfig, wild_sample


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


def test_restyle_closes_an_open_four():
    four = np.zeros((24, 20), np.float32)
    four[0:14, 3:5] = 1  # left arm
    four[12:14, 3:18] = 1  # bar
    four[0:24, 13:15] = 1  # stem: the top is open between the arms
    closed = restyle(four, 4, np.random.default_rng(0))
    top = closed[:3] > 0.5  # the first rows of ink (restyle crops to the ink)
    runs = np.flatnonzero(np.diff(np.r_[0, top.any(0).astype(int), 0]))
    assert len(runs) // 2 == 1  # one run of ink across the top: the arms are joined
    assert np.array_equal(restyle(four, 5, np.random.default_rng(0)), four[:, 3:18])  # other digits: unchanged


def test_blank_training_images_are_all_background(digits):
    cfg = WildConfig(blank=1.0)
    for k in range(10):
        image, label = wild_sample(np.random.default_rng(k), *digits, cfg)
        assert image.shape == label.shape == (cfg.height, cfg.width)
        assert (label == BACKGROUND).all()


def _holes(p: np.ndarray) -> int:
    """Closed loops in a patch's ink: background pieces that do not touch the border."""
    bg = np.pad(p <= 0.5, 1, constant_values=True).astype(np.uint8)
    return cv2.connectedComponents(bg, connectivity=4)[0] - 2  # minus the label 0 and the outer background


def test_restyle_loops_some_twos_and_never_blots_them():
    """A school-cursive 2 gains a closed loop at its lower left; a 2 already looped or too thick keeps its shape."""
    pool, labels = digit_pool("train")
    changed = gained = 0
    for k, i in enumerate(np.flatnonzero(labels == 2)[:100]):
        d = _crop(pool[i])
        p = restyle(d, 2, np.random.default_rng(k))
        if p.shape == d.shape and np.array_equal(p, d):
            continue
        changed += 1
        gained += _holes(p) > _holes(d)
        assert p.shape[0] <= d.shape[0] + 2  # the loop sits on the base, inside the digit's height
    assert 10 <= changed <= 50  # a share of 2s, not all
    assert gained >= 0.8 * changed  # a loop, not a blot


def test_lift_breaks_the_stroke_once_and_keeps_the_rest():
    bar = np.zeros((24, 8), np.float32)
    bar[:, 3:5] = 1.0  # a 1: one vertical stroke 2 px wide
    broken = lift(bar, np.random.default_rng(0))
    assert broken.shape == bar.shape and not (broken > bar).any()  # only erases
    assert cv2.connectedComponents((broken > 0.5).astype(np.uint8))[0] == 3  # background + two pieces
    assert 0.6 * bar.sum() < broken.sum() < bar.sum()  # a gap, not the digit gone

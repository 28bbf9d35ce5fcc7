"""A number photographed at a tilt: its angle measured from the ink, read turned upright, its mask turned back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segapp.classes import BACKGROUND
from segapp.inference import InferenceConfig, Segmenter
from segapp.m2nist import load_mnist
from segapp.tilt import MIN_TILT, box_back, text_tilt, turn_back, upright

DIGITS = (3, 7, 2, 5, 0)  # MNIST test digits by index, labels below (the first of each class in the test file)


@pytest.fixture(scope="module")
def mnist_line():
    """Five MNIST test digits side by side on one baseline, white on black: (image, class map, text)."""
    images, labels = load_mnist("test")
    picks = [int(np.nonzero(labels == d)[0][0]) for d in DIGITS]
    img = np.zeros((48, 16 + 24 * len(picks)), np.uint8)
    lab = np.full(img.shape, BACKGROUND, np.uint8)
    for k, i in enumerate(picks):
        img[10:38, 8 + 24 * k : 36 + 24 * k] = np.maximum(img[10:38, 8 + 24 * k : 36 + 24 * k], images[i])
        view = lab[10:38, 8 + 24 * k : 36 + 24 * k]
        view[images[i] > 64] = labels[i]
    return img, lab, " ".join(str(d) for d in DIGITS)


def turned(a: np.ndarray, degrees: float, interp: int = cv2.INTER_LINEAR, fill: int = 0) -> np.ndarray:
    """``a`` turned ``degrees`` counterclockwise about its centre on a canvas that holds it."""
    h, w = a.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    W, H = int(np.ceil(h * s + w * c)) + 10, int(np.ceil(h * c + w * s)) + 10
    m[:, 2] += (W / 2 - w / 2, H / 2 - h / 2)
    return cv2.warpAffine(a, m, (W, H), flags=interp, borderValue=fill)


@pytest.mark.parametrize("degrees", [-30, -15, 12, 25, 35])
def test_the_angle_of_a_tilted_line_is_found(mnist_line, degrees):
    img, _, _ = mnist_line
    assert text_tilt(turned(img, degrees)) == pytest.approx(degrees, abs=4)


@pytest.mark.parametrize("degrees", [0, 5, -6])
def test_an_upright_or_slightly_tilted_line_is_left_as_it_is(mnist_line, degrees):
    img, _, _ = mnist_line
    assert abs(degrees) < MIN_TILT and text_tilt(turned(img, degrees)) == 0.0


def test_two_digits_or_scattered_digits_give_no_angle(mnist_line, test_split):
    img, _, _ = mnist_line
    assert text_tilt(turned(img[:, : 8 + 24 * 2 + 8], 25)) == 0.0  # two digits: no baseline to measure
    assert text_tilt(np.zeros((64, 84), np.uint8)) == 0.0  # no ink at all


def test_upright_and_back_is_the_identity_on_a_mask(mnist_line):
    """The image turned upright, its strokes found there and turned back, lands on the input's strokes."""
    img, _, _ = mnist_line
    tilted = turned(img, 20)
    straight, inside, back = upright(tilted, 20)
    assert inside.shape == straight.shape and inside.mean() < 1.0  # the canvas's corners come from no pixel
    mask = np.where(straight > 127, 1, BACKGROUND).astype(np.uint8)  # a class map found on the upright image
    again = turn_back(mask, back, tilted.shape, BACKGROUND)
    strokes = tilted > 127
    assert again.shape == tilted.shape
    assert (again[strokes] == 1).mean() > 0.9 and (again[tilted < 20] == 1).mean() < 0.01
    ys, xs = np.nonzero(mask == 1)
    box = box_back([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], back, tilted.shape)
    ty, tx = np.nonzero(strokes)
    assert box[0] <= tx.min() + 1 and box[1] <= ty.min() + 1 and box[2] >= tx.max() and box[3] >= ty.max()


@pytest.mark.parametrize("degrees", [-28, 24])
def test_a_tilted_number_is_read_and_its_mask_aligns_with_the_input(mnist_line, degrees):
    """Read as a user's photo at a tilt would be (dark ink on paper); the shipped weights."""
    img, lab, text = mnist_line
    ink, truth = turned(img, degrees), turned(lab, degrees, cv2.INTER_NEAREST, BACKGROUND)
    photo = 235 - (ink.astype(np.float32) * 0.8).astype(np.uint8)
    seg = Segmenter()(photo)
    assert seg.text == text and seg.classes.shape == photo.shape
    strokes = truth != BACKGROUND
    assert (seg.classes[strokes] == truth[strokes]).mean() > 0.9
    assert ((seg.classes != BACKGROUND) & (ink < 8)).sum() <= 0.01 * strokes.sum()  # no mask where no ink is
    for d in seg.digits:  # boxes in the input's pixels, around their digit's pixels
        x0, y0, x1, y1 = d["bbox"]
        assert 0 <= x0 < x1 <= photo.shape[1] and 0 <= y0 < y1 <= photo.shape[0]
        assert (seg.classes[y0:y1, x0:x1] == d["digit"]).sum() >= 0.8 * (seg.classes == d["digit"]).sum() / max(
            1, sum(e["digit"] == d["digit"] for e in seg.digits))
    plain = Segmenter(cfg=InferenceConfig(deskew=False))(photo)
    assert plain.classes.shape == photo.shape  # --no-deskew reads it as it stands

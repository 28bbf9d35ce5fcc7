"""A number photographed at a tilt: its angle measured from the ink, read turned upright, its mask turned back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from imagefiles import mnist_line, tilted_photo

from benchmarks.robustness import tilted as tilted_pair
from segapp.classes import BACKGROUND
from segapp.inference import InferenceConfig, Segmenter
from segapp.tilt import MIN_TILT, box_back, text_tilt, turn_back, upright


def turned(a: np.ndarray, degrees: float) -> np.ndarray:
    """White-on-black ink turned ``degrees`` counterclockwise as the benchmark's ``tilted`` category turns it."""
    return tilted_pair(a, np.full(a.shape, BACKGROUND, np.uint8), degrees)[0]


@pytest.fixture(scope="module")
def line():
    """Five MNIST test digits side by side on one baseline, white on black: (image, class map, text)."""
    return mnist_line()


@pytest.mark.parametrize("degrees", [-30, -15, 12, 25, 35])
def test_the_angle_of_a_tilted_line_is_found(line, degrees):
    img, _, _ = line
    assert text_tilt(turned(img, degrees)) == pytest.approx(degrees, abs=4)


@pytest.mark.parametrize("degrees", [0, 5, -6])
def test_an_upright_or_slightly_tilted_line_is_left_as_it_is(line, degrees):
    img, _, _ = line
    assert abs(degrees) < MIN_TILT and text_tilt(turned(img, degrees)) == 0.0


def test_two_digits_two_rows_or_no_ink_give_no_angle(line, test_split):
    img, _, _ = line
    assert text_tilt(turned(img[:, : 8 + 24 * 2 + 8], 25)) == 0.0  # two digits: no baseline to measure
    assert text_tilt(np.zeros((64, 84), np.uint8)) == 0.0
    images = test_split[0]  # two rows of M2NIST canvases: their scattered digits hold no one line
    assert all(text_tilt(np.vstack([images[2 * k], images[2 * k + 1]])) == 0.0 for k in range(20))


def test_upright_and_back_is_the_identity_on_a_mask(line):
    """The image turned upright, its strokes found there and turned back, lands on the input's strokes."""
    img, _, _ = line
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


def test_a_reduced_upright_copy_turns_back_onto_the_full_size_strokes(line):
    """A phone photo's upright copy is made smaller (``shrink``); its mask still lands on the input's own pixels."""
    img, _, _ = line
    big = cv2.resize(turned(img, -22), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    straight, inside, back = upright(big, -22, shrink=1 / 3)
    assert straight.shape[0] < big.shape[0] and inside.shape == straight.shape
    mask = np.where(straight > 127, 1, BACKGROUND).astype(np.uint8)
    again = turn_back(mask, back, big.shape, BACKGROUND)
    strokes = big > 127
    assert (again[strokes] == 1).mean() > 0.85 and (again[big < 20] == 1).mean() < 0.02


@pytest.mark.parametrize("degrees", [-28, 24])
def test_a_tilted_number_is_read_and_its_mask_aligns_with_the_input(line, degrees):
    """Read as a user's photo at a tilt would be (dark ink on paper); the shipped weights."""
    img, lab, text = line
    ink, truth = tilted_pair(img, lab, degrees)
    photo = tilted_photo(ink)
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

"""A page's straight lines (segapp.lines), and the digit height measured without them (segapp.ink_parts)."""

import cv2
import numpy as np
import pytest

from segapp.ink_parts import measure_ink
from segapp.lines import edge_to_edge, page_lines, runs, without_page_lines
from segapp.m2nist import make_split


def squared_page(canvas: np.ndarray, level: int, step: int = 36, tilt: float = 0.015) -> np.ndarray:
    """White-on-black ink of an M2NIST canvas at twice its size (digits ~40 px) on a squared page whose lines
    (``level`` of 255, 2-3 px, a little askew) run through the digits."""
    big = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    page = np.zeros((220, 280), np.uint8)
    page[30 : 30 + big.shape[0], 40 : 40 + big.shape[1]] = big
    yy, xx = np.mgrid[0:220, 0:280]
    for along, across in ((yy, xx), (xx, yy)):
        page = np.maximum(page, level * (np.abs((along + tilt * across) % step - step / 2) < 1.2)).astype(np.uint8)
    return page


def test_runs_are_the_straight_ink_at_least_so_long_across_small_gaps():
    b = np.zeros((20, 60), np.uint8)
    b[5, 2:32] = 1  # a 30 px row ...
    b[5, 15:17] = 0  # ... with a 2 px gap
    b[12, 2:12] = 1  # a 10 px row
    found = runs(b, 20, gap=2, vertical=False)
    assert found[5, 4:30].all() and abs(int(found.sum()) - 30) <= 1 and not found[12].any()  # (even kernels: +-1 px)
    assert not runs(b, 20, gap=1, vertical=False).any()  # the gap, not bridged
    assert not runs(b, 20, gap=2, vertical=True).any()  # no column runs 20 px
    assert (runs(b.T, 20, gap=2, vertical=True) == found.T).all()


@pytest.mark.parametrize("level", [90, 160])
def test_a_squared_pages_lines_are_found_and_its_digits_are_not(level):
    images, _ = make_split("test", n=4, seed=5)
    for canvas in images:
        page = squared_page(canvas, level)
        lines = page_lines(page >= 64)
        grid = squared_page(np.zeros_like(canvas), level) >= 64
        big = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        digits = np.zeros_like(grid)
        digits[30 : 30 + big.shape[0], 40 : 40 + big.shape[1]] = big >= 64
        digits &= ~cv2.dilate(grid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # away from the lines
        assert (lines & grid).sum() >= 0.9 * grid.sum()
        assert (lines & digits).sum() <= 0.1 * digits.sum()


@pytest.mark.parametrize("level", [90, 160])
def test_digits_on_a_squared_page_are_measured_at_their_own_height(level):
    """Lines from a quarter of full ink join the digits to the page's grid: the grid, digits and all, was one part
    dropped as a frame (no height: nothing read) or the median part as tall as the page (read at a fifth of its
    size). Measured without the lines, the digits are their own ~40 px."""
    images, _ = make_split("test", n=6, seed=5)
    heights = [measure_ink(squared_page(canvas, level)).height for canvas in images]
    clean = [measure_ink(cv2.resize(c, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)).height for c in images]
    assert all(h is not None and abs(h / c - 1) < 0.15 for h, c in zip(heights, clean)), (heights, clean)


def test_a_stroke_crossing_a_pages_line_stays_whole():
    ink = np.zeros((100, 120), np.uint8)
    ink[50:52, :] = 120  # a page's line from edge to edge
    ink[30:72, 60:63] = 255  # a stroke crossing it
    assert edge_to_edge(ink >= 64)
    clean = without_page_lines(ink, (ink >= 64).astype(np.uint8))
    assert not clean[50:52, :50].any() and not clean[50:52, 70:].any()  # the line is gone ...
    assert (clean[30:72, 60:63] == 255).all()  # ... the stroke through it is not


def test_digits_filling_their_crop_from_edge_to_edge_keep_their_height():
    """Two 1s cropped tight run from the top edge to the bottom: all "lines", nothing left without them, so the
    first measure stands."""
    ink = np.zeros((40, 30), np.uint8)
    ink[:, 6:9] = ink[:, 20:23] = 255
    assert edge_to_edge(ink >= 64) and measure_ink(ink).height == 40


def test_no_edge_to_edge_ink_on_a_plain_canvas():
    images, _ = make_split("test", n=20, seed=1)
    assert not any(edge_to_edge(img >= 64) for img in images)

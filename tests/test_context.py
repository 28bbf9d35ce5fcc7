"""segapp/context.py and segapp/context_train.py: a glyph's window of its line, the reader that judges it, its
training lines, and the weights' round trip."""

import json

import cv2
import numpy as np
import pytest
import torch

from segapp.cli import main
from segapp.context import (
    REF,
    WINDOW,
    ContextConfig,
    ContextReader,
    frame,
    letter_probability,
    load_context,
    save_context,
    window,
    windows,
)
from segapp.context_train import LETTER, LineWindows, glyph_windows, text_line
from segapp.m2nist import load_mnist
from segapp.model import WeightsError
from segapp.strokes import thin
from segapp.synth import finish


def test_frame_takes_the_tall_glyphs_height_and_middle_not_a_lowercase_letters():
    boxes = [[0, 10, 10, 30], [12, 10, 22, 30], [24, 18, 32, 30], [34, 18, 42, 30]]  # "42" and an "mm" below
    assert frame(boxes) == (20.0, 20.0)


@pytest.mark.parametrize("box", [[40, 10, 50, 30], [5, 14, 11, 30], [90, 2, 99, 22]])
def test_window_puts_the_glyph_in_the_middle_at_the_lines_scale(box):
    image = np.zeros((40, 120), np.float32)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 1.0
    own = np.ones((y1 - y0, x1 - x0), bool)
    w = window(image, own, box, height=20.0, middle=(y0 + y1) / 2)
    assert w.shape == (2, *WINDOW) and w.dtype == np.float32
    h, wd = WINDOW
    ys, xs = np.nonzero(w[1] > 0.5)  # the glyph's own pixels: centred, scaled by REF / 20
    assert abs((xs.min() + xs.max() + 1) / 2 - wd / 2) <= 1 and abs((ys.min() + ys.max() + 1) / 2 - h / 2) <= 1
    assert abs((ys.max() + 1 - ys.min()) - (y1 - y0) * REF / 20) <= 1.5
    assert np.abs(w[0] - w[1]).max() < 1e-3  # the ink channel holds the same glyph, alone in this image


def test_windows_of_a_line_share_its_frame():
    image = np.zeros((40, 120), np.float32)
    line = [([10, 10, 20, 30], np.ones((20, 10), bool)), ([30, 18, 38, 30], np.ones((12, 8), bool))]
    w = windows(image, line)
    assert w.shape == (2, 2, *WINDOW)
    rows = [np.nonzero(x[1].max(1) > 0.5)[0] for x in w]
    assert rows[1].max() == pytest.approx(rows[0].max(), abs=1)  # the short glyph sits on the tall one's baseline
    assert rows[1].min() > rows[0].min() + 4


def test_reader_shape_round_trip_and_errors(tmp_path):
    reader = ContextReader(ContextConfig(width=4)).eval()
    x = np.random.default_rng(0).random((3, 2, *WINDOW), dtype=np.float32)
    p = letter_probability(reader, x)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    assert letter_probability(reader, np.zeros((0, 2, *WINDOW), np.float32)).shape == (0,)
    save_context(reader, tmp_path / "c")
    assert json.loads((tmp_path / "c" / "config.json").read_text())["width"] == 4
    again = load_context(tmp_path / "c")
    assert np.allclose(letter_probability(again, x), p, atol=1e-6)
    assert load_context(tmp_path / "none") is None
    save_context(ContextReader(ContextConfig(width=8)), tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    (tmp_path / "d" / "config.json").write_text(json.dumps({**cfg, "width": 4}))
    with pytest.raises(WeightsError, match="train-context"):
        load_context(tmp_path / "d")
    with pytest.raises(ValueError, match="width"):
        ContextConfig(width=2)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist("train")


def test_generated_lines_hold_words_and_numbers_and_label_every_glyph(mnist):
    kinds = set()
    for i in range(12):
        rng = np.random.default_rng([5, i])
        ink, label = text_line(rng, *mnist)
        assert ink.shape == label.shape == (48, 192) and ink.max() <= 1.0
        x, y = glyph_windows(finish(ink, rng), label, rng)
        assert x.dtype == np.uint8 and x.shape[1:] == (2, *WINDOW) and len(x) == len(y)
        assert set(np.unique(label).tolist()) <= set(range(11)) | {LETTER}
        kinds |= set(y.tolist())
    assert kinds == {0, 1}


def test_train_context_writes_a_reader_that_loads(tmp_path):
    out = tmp_path / "ctx"
    main(["train-context", "--lines", "60", "--epochs", "1", "--batch-size", "64", "--width", "4", "--workers", "0",
          "--out", str(out), "--quiet"])
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "args.json", "metrics.json"}
    assert json.loads((out / "args.json").read_text())["lines"] == 60
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["letters_right"] <= 1 and metrics["train_windows"] > 64
    assert isinstance(load_context(out), ContextReader)
    assert torch.is_tensor(next(load_context(out).parameters()))


@pytest.mark.parametrize("canvases", [0.0, 1.0])
def test_an_image_of_the_training_set_is_a_text_line_or_a_canvas_seeded_by_its_index(mnist, canvases):
    data = LineWindows(8, 3, canvases=canvases)
    for i in (0, 5):
        x, y = data[i]
        assert np.array_equal(x, data[i][0]) and len(x) == len(y)  # the same windows every time it is drawn
        if canvases == 0:  # a text line, and no draw for the choice (the shipped reader's stream)
            rng = np.random.default_rng([3, 40, i])
            ink, label = text_line(rng, *mnist)
            want, labels = glyph_windows(finish(ink, rng), label, rng)
            assert np.array_equal(x, want) and np.array_equal(y, labels)


def _stroke_widths(ink: np.ndarray, label: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean stroke width (ink area over skeleton length, px) of each letter piece and each digit of a line."""
    out: tuple[list[float], list[float]] = ([], [])
    for c in [*range(10), LETTER]:
        n, parts = cv2.connectedComponents(((label == c) & (ink > 0.5)).astype(np.uint8))
        for k in range(1, n):
            piece = parts == k
            length = thin(piece).sum()
            if piece.sum() >= 30 and length >= 8:
                out[c == LETTER].append(piece.sum() / length)
    return out


def _digit_boxes(label: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, w, h of the digits of a generated line (pieces of 20 px or more)."""
    boxes = []
    for c in range(10):
        _, _, stats, _ = cv2.connectedComponentsWithStats((label == c).astype(np.uint8))
        boxes += [s[:4] for s in stats[1:] if s[4] >= 20]
    return np.array(boxes).reshape(-1, 4)


def test_one_writers_lines_set_letters_and_digits_alike(mnist):
    """--line-style: a line's letters and digits share a pen, and its digits one size and one baseline, so neither a
    stroke matching the word beside it nor a run of even glyphs says "letter"; without it each digit has its own pen,
    size and drop (the shipped reader's lines)."""
    pen, even = {}, {}
    for style in (0.0, 1.0):
        widths, spread = [], []
        for i in range(40):
            ink, label = text_line(np.random.default_rng([9, i]), *mnist, style=style)
            letters, digits = _stroke_widths(ink, label)
            if letters and digits:
                widths.append(abs(np.log(np.median(letters) / np.median(digits))))
            b = _digit_boxes(label)
            if len(b) >= 2:  # the digits' heights and bottoms, in line heights
                spread.append(max(np.std(b[:, 3]), np.std(b[:, 1] + b[:, 3])) / np.median(b[:, 3]))
        pen[style], even[style] = float(np.median(widths)), float(np.median(spread))
    assert pen[1.0] < 0.6 * pen[0.0] and even[1.0] < 0.6 * even[0.0], (pen, even)

"""Class map -> digits read out, overlays and palette masks."""

import numpy as np
import pytest
from PIL import Image

from segapp.classes import (
    BACKGROUND,
    MAX_DIGIT_ASPECT,
    MAX_DIGIT_HEIGHT,
    MIN_DIGIT_AREA,
    MIN_DIGIT_CONFIDENCE,
    MIN_DIGIT_HEIGHT,
    PALETTE,
)
from segapp.images import prepare
from segapp.inference import Segmenter
from segapp.mask_files import read_mask, save_mask
from segapp.overlays import overlay
from segapp.render import (
    ONE_DIGIT_ASPECT,
    SAME_COLUMNS,
    UNSURE_AREA,
    UNSURE_CONFIDENCE,
    UNSURE_HEIGHT,
    Segmentation,
    read_digits,
)


def canvas(h=20, w=40):
    return np.full((h, w), BACKGROUND, np.uint8)


def test_digits_are_read_left_to_right_with_area_bbox_and_confidence():
    c = canvas()
    c[2:12, 25:30] = 7  # right
    c[5:15, 3:8] = 4  # left
    conf = np.full(c.shape, 0.7, np.float32)
    conf[c == 4] = 0.9
    digits = read_digits(c, conf)
    assert [d["digit"] for d in digits] == [4, 7]
    assert digits[0] == {"digit": 4, "area": 50, "confidence": pytest.approx(0.9), "bbox": [3, 5, 8, 15]}
    assert digits[1]["confidence"] == pytest.approx(0.7)
    assert digits[1]["area"] == 50 and digits[1]["bbox"] == [25, 2, 30, 12]


def test_a_readings_confidence_is_its_least_sure_digits_times_the_rest():
    """One unsure digit makes the number unsure (the product of the digits' confidences); nothing read: None."""
    c = canvas()
    c[2:12, 25:30] = 7
    c[5:15, 3:8] = 4
    conf = np.where(c == 4, 0.9, 0.6).astype(np.float32)
    seg = Segmentation.from_digits(c, prepare(c), read_digits(c, conf))
    assert seg.text == "4 7" and seg.confidence == pytest.approx(0.9 * 0.6)
    assert seg.summary()["confidence"] == pytest.approx(0.54, abs=1e-4)
    empty = Segmentation.from_digits(canvas(), prepare(canvas()), [])
    assert empty.confidence is None and empty.summary()["confidence"] is None


def test_specks_and_misclassified_minorities_are_not_digits():
    c = canvas()
    c[0:2, 0:2] = 1  # a 4-pixel speck, below MIN_DIGIT_AREA
    c[5:15, 10:20] = 3  # a 100-pixel digit ...
    c[5:7, 10:20] = 8  # ... with 20 pixels misread as 8 (< 30% of the 3's 80 pixels)
    assert 4 < MIN_DIGIT_AREA
    assert [d["digit"] for d in read_digits(c, np.ones(c.shape, np.float32))] == [3]


@pytest.mark.parametrize(("confidence", "read"),
                         [(MIN_DIGIT_CONFIDENCE - 0.01, False), (MIN_DIGIT_CONFIDENCE + 0.01, True)])
def test_a_digit_the_net_is_unsure_of_is_not_read(confidence, read):
    """Blown-up specks on blank paper come out as big blobs the net is unsure of; they are not digits."""
    c = canvas()
    c[5:15, 10:20] = 8
    conf = np.full(c.shape, confidence, np.float32)
    assert [d["digit"] for d in read_digits(c, conf)] == ([8] if read else [])


@pytest.mark.parametrize(("unsure_box", "read"), [
    ((slice(4, 16), slice(26, 34)), True),  # the sure 3's height, in its rows: a digit of the number
    ((slice(4, 16), slice(26, 29)), False),  # too little ink (36 px) to be read unsure
    ((slice(6, 14), slice(26, 38)), False),  # 2/3 of the 3's height: a smudge beside it
    ((slice(0, 20), slice(26, 34)), False),  # 5/3 of its height
    ((slice(20, 32), slice(26, 34)), False),  # the 3's height, but in other rows: another line's smudge
])
def test_an_unsure_digit_is_read_only_beside_a_sure_one_of_its_size(unsure_box, read):
    """A hairline hand's 2 the net colours at 0.5-0.65 confidence is read in a number, never on a blank page."""
    c = np.full((36, 48), BACKGROUND, np.uint8)
    conf = np.full(c.shape, 0.95, np.float32)
    c[4:16, 4:12] = 3
    c[unsure_box] = 2
    conf[c == 2] = (UNSURE_CONFIDENCE + MIN_DIGIT_CONFIDENCE) / 2
    assert [d["digit"] for d in read_digits(c, conf)] == ([3, 2] if read else [3])
    c[c == 3] = BACKGROUND  # alone, nothing sure beside it: not read
    assert read_digits(c, conf) == []


@pytest.mark.parametrize(("box", "read"), [
    ((slice(5, 5 + MIN_DIGIT_HEIGHT - 1), slice(10, 16)), False),  # too short: a crease, a dash
    ((slice(5, 5 + MIN_DIGIT_HEIGHT), slice(10, 16)), True),
    ((slice(5, 15), slice(2, 3 + int(10 * MAX_DIGIT_ASPECT))), False),  # a ruled line's stretch: too wide
    ((slice(5, 15), slice(2, 2 + int(10 * MAX_DIGIT_ASPECT))), True),
    ((slice(0, MAX_DIGIT_HEIGHT + 1), slice(10, 14)), False),  # a margin line down the page
])
def test_boxes_no_digit_has_are_not_read(box, read):
    """Ruled lines, margins and creases on blank pages were coloured and read as 7s, 5s and 2s."""
    c = np.full((MAX_DIGIT_HEIGHT + 4, 40), BACKGROUND, np.uint8)
    c[box] = 7
    assert [d["digit"] for d in read_digits(c, np.ones(c.shape, np.float32))] == ([7] if read else [])


def test_touching_digits_are_both_read():
    c = canvas()
    c[4:16, 5:15] = 2
    c[4:16, 15:25] = 5  # shares an edge with the 2
    assert [d["digit"] for d in read_digits(c, np.ones(c.shape, np.float32))] == [2, 5]


def test_overlay_colours_digits_and_leaves_background_untouched():
    display = np.full((4, 4, 3), 100, np.uint8)
    c = np.full((4, 4), BACKGROUND, np.uint8)
    c[1, 2] = 6
    out = overlay(display, c, alpha=1.0)
    assert tuple(out[1, 2]) == tuple(PALETTE[6])
    assert np.array_equal(np.delete(out.reshape(-1, 3), 6, axis=0), np.delete(display.reshape(-1, 3), 6, axis=0))
    half = overlay(display, c, alpha=0.5)[1, 2]
    assert np.allclose(half, (display[1, 2] + PALETTE[6].astype(float)) / 2, atol=1)


def test_mask_png_reads_back_as_class_indices_and_shows_the_palette(tmp_path):
    c = np.random.default_rng(0).integers(0, 11, size=(13, 29)).astype(np.uint8)
    save_mask(tmp_path / "m.png", c)
    assert np.array_equal(read_mask(tmp_path / "m.png"), c)
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "P"
        assert np.array_equal(np.asarray(img.convert("RGB")), PALETTE[c])


def test_shipped_model_reads_m2nist_digits(test_split):
    """The shipped weights read the right digit sequence on most M2NIST test images."""
    images, masks = test_split
    results = Segmenter().segment([prepare(im) for im in images])
    truth = [[d["digit"] for d in read_digits(m, np.ones(m.shape, np.float32))] for m in masks]
    correct = sum([d["digit"] for d in r.digits] == t for r, t in zip(results, truth))
    assert correct >= 0.9 * len(images)
    assert all(r.classes.shape == (64, 84) for r in results)


CVD = {  # Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB
    "normal": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (N, 3) in 0-1 linear -> CIELAB (D65)."""
    xyz = rgb @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], -1)


@pytest.mark.parametrize("vision", sorted(CVD))
def test_digit_colours_stay_distinguishable_with_colour_blindness(vision):
    c = PALETTE[:10].astype(float) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lab = to_lab(np.clip(linear @ CVD[vision].T, 0, 1))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(10) * 1e9
    assert d.min() > 20, f"digits {np.unravel_index(d.argmin(), d.shape)} look alike under {vision}"


def _read_digits_by_blob(classes, confidence, min_area=MIN_DIGIT_AREA, min_confidence=MIN_DIGIT_CONFIDENCE):
    """read_digits' rule written the plain way, blob by blob (its former code): the reference it must match."""
    import cv2

    n, labels = cv2.connectedComponents((classes != BACKGROUND).astype(np.uint8), connectivity=8)
    sure, unsure = [], []  # (digit, x centre, blob, blob height)
    for blob in range(1, n):
        inside = labels == blob
        counts = np.bincount(classes[inside], minlength=10)[:10]
        bys, bxs = np.nonzero(inside)
        blob_h = bys.max() + 1 - bys.min()
        narrow = bxs.max() + 1 - bxs.min() < ONE_DIGIT_ASPECT * blob_h
        for d in np.flatnonzero(counts >= max(min_area, 0.3 * counts.max())):
            if narrow and counts[d] < counts.max():
                continue
            ys, xs = np.nonzero(inside & (classes == d))
            conf = float(confidence[ys, xs].mean())
            h, w = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
            if not (MIN_DIGIT_HEIGHT <= h <= MAX_DIGIT_HEIGHT and w <= MAX_DIGIT_ASPECT * h):
                continue
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            f = ({"digit": int(d), "area": len(xs), "confidence": round(conf, 4), "bbox": box}, xs.mean(), blob, blob_h)
            if conf >= min_confidence:
                sure.append(f)
            elif conf >= UNSURE_CONFIDENCE and len(xs) >= UNSURE_AREA and len(xs) == counts.max():
                unsure.append(f)

    def rows(a, b):
        (_, ay0, _, ay1), (_, by0, _, by1) = a["bbox"], b["bbox"]
        return min(ay1, by1) - max(ay0, by0) >= 0.5 * min(ay1 - ay0, by1 - by0)

    def height(a):
        return a["bbox"][3] - a["bbox"][1]

    here = sure + [u for u in unsure
                   if any(rows(u[0], s[0]) and UNSURE_HEIGHT[0] <= height(u[0]) / height(s[0]) <= UNSURE_HEIGHT[1]
                          for s in sure)]
    found = []
    for f, fx, blob, blob_h in here:  # a smaller digit in the same columns and rows as a larger one is part of it
        if not any(g["area"] > f["area"] and abs(gx - fx) < SAME_COLUMNS * blob_h and rows(f, g)
                   for g, gx, gblob, _ in here if gblob == blob):
            found.append((f, fx))
    return [f for f, _ in sorted(found, key=lambda t: t[1])]


@pytest.mark.parametrize("seed", range(5))
def test_reading_many_blobs_matches_the_blob_by_blob_rule(seed):
    """Noisy maps (many touching and overlapping blobs of mixed classes): the one-pass reading equals the plain one."""
    rng = np.random.default_rng(seed)
    c = np.full((48, 60), BACKGROUND, np.uint8)
    for _ in range(15):
        y, x = rng.integers(0, 44), rng.integers(0, 56)
        c[y : y + rng.integers(2, 14), x : x + rng.integers(2, 14)] = rng.integers(0, 10)
    conf = rng.uniform(0.4, 1.0, c.shape).astype(np.float32)
    conf[:, 30:] -= 0.2  # the right half unsure: the unsure-beside-sure rule is exercised too
    for min_area in (5, MIN_DIGIT_AREA):
        want = _read_digits_by_blob(c, conf, min_area)
        assert want and read_digits(c, conf, min_area) == want


@pytest.mark.parametrize(("boxes", "want"), [
    # "6 1" over "8 8", rows a few px apart: the lower row's first 8 sits nearer the upper row's centres
    ([(9, 37, 28, 59, 6), (44, 19, 50, 40, 1), (40, 60, 56, 81, 8), (13, 89, 25, 111, 8)], ["6 1", "8 8"]),
    ([(16, 16, 32, 37, 4), (15, 56, 33, 77, 9), (40, 31, 53, 51, 1), (44, 85, 58, 105, 4)], ["4 1", "9 4"]),
    # a short piece of a touching 3 beside its other half stacks on nothing: one line
    ([(14, 16, 28, 36, 8), (37, 23, 43, 43, 1), (53, 32, 66, 52, 1), (74, 21, 83, 32, 3), (70, 28, 90, 39, 3),
      (93, 16, 107, 36, 0)], ["8 1 1 3 3 0"]),
])
def test_close_rows_are_split_by_which_digits_stack(boxes, want):
    from segapp.render import Segmentation

    digits = [{"digit": d, "bbox": [x0, y0, x1, y1], "area": 50, "confidence": 1.0} for x0, y0, x1, y1, d in boxes]
    assert Segmentation.from_digits(canvas(), None, digits).lines == want


def test_one_mask_reader_for_score_and_folder_datasets(tmp_path):
    """`segapp score` and `evaluate --data` / `train --data` read masks by one rule: what `segapp predict` writes
    (and a picture painted in the palette) is read, an index that is no class is refused."""
    import segapp.folders
    from segapp.classes import PALETTE, VOID
    from segapp.mask_files import MaskError

    assert segapp.folders.read_mask is read_mask
    c = np.full((6, 8), 10, np.uint8)
    c[1:4, 2:5], c[0, 0] = 7, VOID
    save_mask(tmp_path / "m.png", c)
    assert np.array_equal(read_mask(tmp_path / "m.png"), c)
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1:4, 2:5] = PALETTE[7]
    Image.fromarray(rgb).save(tmp_path / "painted.png")
    assert np.array_equal(read_mask(tmp_path / "painted.png"), np.where(c == VOID, 10, c))
    Image.fromarray(np.full((6, 8), 37, np.uint8)).save(tmp_path / "garbage.png")
    with pytest.raises(MaskError, match="class index 37"):
        read_mask(tmp_path / "garbage.png")


@pytest.mark.parametrize(("layout", "read"), [
    ("side by side", [3, 5]),  # touching digits: two
    ("same columns", [6]),  # a wide italic 6 coloured 0 at one side: one digit
    ("stacked", [8, 6]),  # close rows: a 6 touching the 8 above it, two digits (reading order is not checked here)
])
def test_two_classes_in_one_blob_are_two_digits_only_side_by_side(layout, read):
    c = np.full((50, 60), BACKGROUND, np.uint8)
    if layout == "side by side":
        c[10:30, 10:25], c[10:30, 25:40] = 3, 5
    elif layout == "same columns":
        c[10:30, 10:28] = 6
        c[10:30, 15:21] = 0  # a third of the blob, down its middle
    else:
        c[5:25, 10:24], c[25:45, 12:26] = 8, 6
    got = read_digits(c, np.ones(c.shape, np.float32))
    assert sorted(d["digit"] for d in got) == sorted(read)


def _blocks(shape, blocks):
    c = canvas(*shape)
    for y0, y1, x0, x1, d in blocks:
        c[y0:y1, x0:x1] = d
    return c


@pytest.mark.parametrize(("blocks", "want"), [
    # a 4 above a 4, touching at a 2 px neck, beside a 2 above a 3: the merged 4 spans both rows, so two 4s
    ([(4, 22, 4, 16, 2), (30, 48, 4, 16, 3), (4, 25, 30, 42, 4), (25, 27, 35, 37, 4), (27, 48, 30, 42, 4)],
     ["2 4", "3 4"]),
    # a tall 7 in one row of short 0s: no two digits lie one above the other, so it is one digit
    ([(4, 44, 4, 14, 7), (22, 40, 20, 32, 0), (22, 40, 40, 52, 0)], ["7 0 0"]),
    # two rows, but the 4 reaches only a little below the upper row: not tall enough to be two digits
    ([(4, 22, 4, 16, 2), (30, 48, 4, 16, 3), (4, 30, 30, 42, 4)], None),
])
def test_one_class_touching_across_close_rows_is_two_digits(blocks, want):
    from segapp.render import Segmentation

    c = _blocks((52, 60), blocks)
    digits = read_digits(c, np.ones(c.shape, np.float32))
    assert sum(d["area"] for d in digits) == int((c != BACKGROUND).sum())
    lines = Segmentation.from_digits(c, None, digits).lines
    assert lines == want if want else [d["digit"] for d in digits] == [2, 3, 4]


@pytest.mark.parametrize(("blocks", "split"), [
    # close rows, offset: the right column's 7 over 6 touch and were coloured one 6, 40 px tall, from the middle of
    # the upper row's 4 down to the middle of the lower row's 1: no digit's middle lies in both rows, yet two rows
    # stand beside its top and its bottom, so it is two digits, cut at its 2 px neck, each to be read again
    ([(10, 30, 4, 16, 4), (44, 64, 4, 16, 1), (24, 43, 30, 42, 6), (43, 45, 35, 37, 6), (45, 64, 30, 42, 6)], True),
    # the same tall 6 with the digits beside it in one row at its middle: one tall digit, left whole
    ([(30, 50, 4, 16, 4), (30, 50, 50, 60, 1), (24, 64, 30, 42, 6)], False),
    # digits beside its top and bottom (the rows overlap, so neither rule for close rows of one class applies), but
    # it is only 1.6 times as tall as they are: left whole
    ([(10, 30, 4, 16, 4), (28, 48, 4, 16, 1), (16, 48, 30, 42, 6)], False),
])
def test_a_digit_twice_as_tall_across_two_offset_rows_is_cut_in_two(blocks, split):
    c = _blocks((70, 64), blocks)
    digits = read_digits(c, np.ones(c.shape, np.float32))
    sixes = sorted((d["bbox"][1], d["bbox"][3], bool(d.get("_split"))) for d in digits if d["digit"] == 6)
    whole = [(b[0], b[1], False) for b in blocks if b[4] == 6]
    assert sixes == ([(24, 43, True), (43, 64, True)] if split else whole)


@pytest.mark.parametrize(("blocks", "want"), [
    # "0 0" touching at a 4 px neck beside a 5: the 0s' run is 1.9 times as wide as the line is tall, so two 0s
    ([(4, 24, 4, 20, 0), (12, 16, 20, 24, 0), (4, 24, 24, 40, 0), (4, 24, 46, 58, 5)], "0 0 5"),
    # one wide 0 (1.3 times its height) beside a 5: one digit
    ([(4, 24, 4, 30, 0), (4, 24, 36, 48, 5)], "0 5"),
    # a crossed 7 whose bars reach far right (1.8 times its height): the far side is bars, not a digit
    ([(4, 8, 4, 40, 7), (4, 24, 8, 12, 7), (13, 16, 4, 40, 7), (4, 24, 46, 58, 5)], "7 5"),
    # the same wide run with no other digit in its rows: nothing tells one digit's width, left as read
    ([(4, 24, 4, 20, 0), (12, 16, 20, 24, 0), (4, 24, 24, 40, 0)], "0"),
])
def test_one_class_touching_side_by_side_is_two_digits(blocks, want):
    from segapp.render import Segmentation

    c = _blocks((28, 64), blocks)
    digits = read_digits(c, np.ones(c.shape, np.float32))
    assert sum(d["area"] for d in digits) == int((c != BACKGROUND).sum())
    assert Segmentation.from_digits(c, None, digits).text == want
    if want == "0 0 5":  # cut inside the neck, each 0 keeping its own block
        left, right = digits[0]["bbox"], digits[1]["bbox"]
        assert left[0] == 4 and 20 <= left[2] <= 24 and right[0] == left[2] and right[2] == 40


@pytest.mark.parametrize(("blocks", "want"), [
    # a 4 in two strokes: the arm and bar (an L, 12 px wide) 2 px left of the stem: one 4, beside a 5
    ([(4, 16, 4, 6, 4), (14, 16, 4, 16, 4), (4, 24, 18, 20, 4), (4, 24, 28, 40, 5)], "4 5"),
    # two 1s written close: two bare strokes, never joined
    ([(4, 24, 4, 6, 1), (4, 24, 10, 12, 1), (4, 24, 28, 40, 5)], "1 1 5"),
    # two 0s side by side 2 px apart: together wider than one digit, two digits
    ([(4, 24, 4, 16, 0), (4, 24, 18, 30, 0), (4, 24, 36, 48, 5)], "0 0 5"),
    # two narrow 0s as close, together as narrow as one digit: as tall as each other, two digits
    ([(4, 24, 4, 12, 0), (4, 24, 14, 22, 0), (4, 24, 36, 48, 5)], "0 0 5"),
    # the same 4 whose stem the net coloured as a 1: the stem of a 4
    ([(4, 16, 4, 6, 4), (14, 16, 4, 16, 4), (4, 24, 18, 20, 1), (4, 24, 28, 40, 5)], "4 5"),
    # ... or whose arm it coloured as a 1
    ([(4, 16, 4, 6, 1), (14, 16, 4, 16, 1), (4, 24, 18, 20, 4), (4, 24, 28, 40, 5)], "4 5"),
    # ... or both, the arm (with its bar) wider than a bare stroke
    ([(4, 16, 4, 6, 1), (14, 16, 4, 16, 1), (4, 24, 18, 20, 1), (4, 24, 28, 40, 5)], "4 5"),
    # "41" written close: a whole 4 as tall as the 1 beside it keeps its 1
    ([(4, 16, 4, 6, 4), (14, 16, 4, 16, 4), (4, 24, 12, 14, 4), (4, 24, 18, 20, 1), (4, 24, 28, 40, 5)], "4 1 5"),
    # the same two pieces of a 4 but 8 px apart (0.4 of the height): two digits
    ([(4, 16, 4, 6, 4), (14, 16, 4, 16, 4), (4, 24, 24, 26, 4), (4, 24, 34, 46, 5)], "4 4 5"),
    # a hairline hand's 4 coloured as two 1s: the arm, bar and the stem's top as one, the stem's foot, standing
    # apart, as the other (it begins half the arm's height down and reaches below the bar)
    ([(2, 18, 4, 6, 1), (16, 18, 4, 16, 1), (6, 16, 14, 16, 1), (11, 24, 18, 20, 1), (4, 24, 28, 40, 5)], "4 5"),
    # ... whose arm is a hairline with a short bar, a third of its height wide
    ([(2, 20, 4, 6, 1), (17, 20, 4, 10, 1), (11, 26, 12, 14, 1), (4, 24, 28, 40, 5)], "4 5"),
    # a footed 1 and a plain 1 written a little lower (a third of its height down): two 1s, not an arm and stem
    ([(4, 24, 6, 8, 1), (22, 24, 2, 12, 1), (10, 27, 15, 17, 1), (4, 24, 28, 40, 5)], "1 1 5"),
    # a slanted 1 (as wide as an arm) and a taller 1 beside it, their tops level: two 1s
    ([(6, 22, 4, 12, 1), (4, 25, 14, 16, 1), (4, 24, 28, 40, 5)], "1 1 5"),
])
def test_two_pieces_of_one_class_with_one_digits_shape_are_one_digit(blocks, want):
    from segapp.render import Segmentation

    c = _blocks((28, 52), blocks)
    digits = read_digits(c, np.ones(c.shape, np.float32))
    assert sum(d["area"] for d in digits) == int((c != BACKGROUND).sum())
    assert Segmentation.from_digits(c, None, digits).text == want
    if want == "4 5" and blocks[0][0] == 4:
        assert digits[0]["bbox"] == [4, 4, 20, 24]
        others = {d for *_, d in blocks[:3]} - {4}
        assert digits[0].get("_joined", ()) == tuple(sorted(others))  # the mask recolours these pieces


@pytest.mark.parametrize(("blocks", "want"), [
    # "0 5 1" whose 5 was written with its top bar apart: two runs of 5 one above the other, one 5
    ([(4, 24, 4, 16, 0), (4, 12, 24, 36, 5), (13, 24, 24, 36, 5), (4, 24, 42, 44, 1)], "0 5 1"),
    # the same with the bar a third of a digit above the body: two runs
    ([(4, 24, 4, 16, 0), (0, 8, 24, 36, 5), (14, 24, 24, 36, 5), (4, 24, 42, 44, 1)], None),
    # two close rows, a 5 above a 5: each as tall as the digits beside it, two digits
    ([(2, 20, 4, 16, 0), (2, 20, 24, 36, 5), (22, 40, 24, 36, 5), (22, 40, 42, 54, 3)], "0 5\n5 3"),
])
def test_two_pieces_of_one_class_one_above_the_other_are_one_digit(blocks, want):
    from segapp.render import Segmentation

    c = _blocks((44, 60), blocks)
    digits = read_digits(c, np.ones(c.shape, np.float32))
    assert sum(d["area"] for d in digits) == int((c != BACKGROUND).sum())
    if want is None:
        assert [d["digit"] for d in digits].count(5) == 2
    else:
        assert Segmentation.from_digits(c, None, digits).text == want

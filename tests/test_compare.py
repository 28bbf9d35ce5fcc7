"""benchmarks/compare.py: two robustness runs side by side, losses beyond a rule's drops flagged."""

import json
import math

import pytest

from benchmarks.compare import compare, format_rows, load, main


def run(miou: float, read: float, n: int = 100, bleed: float = 0.02) -> dict:
    return {"miou_digits": miou, "read": read, "n": n, "bleed": bleed, "missed": 0.01}


@pytest.mark.parametrize("cand, flag", [
    (run(0.950, 0.90), False),  # the same
    (run(0.9475, 0.89), False),  # -0.0025 and one number: within the drops
    (run(0.946, 0.90), True),  # -0.004 mIoU
    (run(0.950, 0.88), True),  # two numbers fewer
])
def test_a_category_losing_more_than_the_drops_is_flagged(cand, flag):
    rows = compare({"hand": run(0.950, 0.90)}, {"hand": cand})
    assert [r["flag"] for r in rows] == [flag]
    assert rows[0]["read"] == (90, round(cand["read"] * 100))


def test_blank_categories_have_no_miou_and_categories_missing_from_either_run_are_left_out():
    base = {"blank": run(math.nan, 0.99), "hand": run(0.95, 0.9)}
    rows = compare(base, {"blank": run(math.nan, 0.98), "words": run(0.8, 0.6)})
    assert [r["category"] for r in rows] == ["blank"] and not rows[0]["flag"]  # one frame: within --read-drop
    text = format_rows(rows)
    assert "99 ->   98" in text and "numbers read   99 -> 98 (-1)" in text


def test_the_command_reads_two_out_folders(tmp_path, capsys):
    for name, read in (("a", 0.90), ("b", 0.93)):
        (tmp_path / name).mkdir()
        results = {"args": {}, "results": {"touching": run(0.98, read)}}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    assert load(tmp_path / "a")["touching"]["read"] == 0.90
    rows = main([str(tmp_path / "a"), str(tmp_path / "b" / "results.json")])
    assert rows[0]["read"] == (90, 93)
    assert "90 ->   93" in capsys.readouterr().out

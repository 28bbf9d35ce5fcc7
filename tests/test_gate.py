"""The shipping gate (benchmarks/gate.py): both nets measured on the same images, each check against its bar."""

import argparse
import json

import pytest

from benchmarks import gate

# Few images of each kind, so the run takes seconds. On 8 M2NIST images one miss is 12.5 points: the M2NIST bars are
# set to 0 here (test_the_rule_flags_each_drop_past_its_bar checks them).
TINY = ["--real-n", "2", "--real-seeds", "77", "--font-n", "1", "--rows-n", "2", "--rows-seeds", "101",
        "--dev-n", "1", "--m2nist-limit", "8", "--m2nist-miou", "0", "--m2nist-read", "0"]


@pytest.mark.slow
def test_a_net_against_itself_gains_nothing_and_ships_only_when_no_gain_is_asked(tmp_path, capsys):
    out = tmp_path / "gate.json"
    r = gate.main(["weights", "--baseline", "weights", "--json", str(out), *TINY])
    assert r["candidate"] == {**r["baseline"], "weights": "weights"}  # same net, same images: the same figures
    assert [c["check"] for c in r["checks"] if not c["ok"]] == ["real people's digits, dev half (points gained)"]
    assert not r["ship"] and "verdict: do not ship" in capsys.readouterr().out
    assert json.loads(out.read_text())["ship"] is False
    assert gate.main(["weights", "--baseline", "weights", "--real-gain", "0", *TINY])["ship"]


def test_the_rule_flags_each_drop_past_its_bar():
    a = argparse.Namespace(real_gain=2.5, fonts_drop=0.25, rows_drop=1.0, category_drop=3.0, m2nist_miou=0.985,
                           m2nist_read=0.98)
    dev = {c: 0.9 for c in gate.CATEGORIES}
    old = {"real": {"real": 0.80, "real_paper": 0.80}, "fonts": 0.87, "rows": {c: 0.96 for c in gate.ROWS},
           "dev": dev, "m2nist": {"miou_digits": 0.987, "read": 0.985}}
    new = {**old, "real": {"real": 0.84, "real_paper": 0.82}, "rows": {**old["rows"], "touching": 0.945},
           "dev": {**dev, "real": 0.87, "blank_noise": 0.89}, "m2nist": {"miou_digits": 0.9847, "read": 0.983}}
    failed = [c["check"] for c in gate.checks(new, old, a) if not c["ok"]]
    # real +3 points passes (+2.5 asked); touching -1.5 fails; the worst category, real at 90% -> 87%, loses exactly
    # the 3 points allowed (in floating point 0.87 - 0.9 is a hair below -0.03); sensor noise -1 is within them, but a
    # blank set may not lose any; M2NIST 0.9847 is under 0.985
    assert failed == ["touching (points)", "blank pages and sensor noise read as nothing (points)",
                      "M2NIST test, mean IoU digits"]
    assert "worst: real" in gate.checks(new, old, a)[5]["check"]

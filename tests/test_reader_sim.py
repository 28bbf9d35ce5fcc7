"""benchmarks/reader_sim.py: a reread rule replayed on recorded digits reads what the inference path reads."""

import json

import numpy as np
import pytest

from benchmarks import reader_sim
from benchmarks.robustness import CATEGORIES, build
from segapp.inference import InferenceConfig, Segmenter

CATS, SEED, N = ["real", "hand_small"], 77, 4  # real people's digits and small hands: digits the net is unsure of


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "digits.npz"
    reader_sim.main(["collect", "--categories", ",".join(CATS), "--seed", str(SEED), "--fonts", "dev", "--n", str(N),
                     "--out", str(path)])
    return path


def _readings(reader: bool) -> list[str]:
    seg = Segmenter("weights", InferenceConfig(reader=reader))
    out = []
    for cat in CATS:
        for k, (data, ext, _, _) in enumerate(build(cat, N, np.random.default_rng([SEED, CATEGORIES.index(cat)]),
                                                    "dev")):
            out.append(seg(data, f"{k}.{ext}").text)
    return out


def test_replayed_rules_read_what_segapp_reads(recorded):
    z = np.load(recorded)
    recs, pn = json.loads(str(z["recs"])), z["pn"]
    assert len(recs) == N * len(CATS) and len(z["crops"]) == len(pn) > 0
    pr, p_not = reader_sim.reader_probs(["weights/reader"], z["crops"])
    assert not p_not.any()  # the shipped reader knows digits only
    alone = [reader_sim.text_of(r["digits"], c) for r, c in zip(recs, reader_sim.classes(recs, pn, None, 0.95, 0.6))]
    mixed = [reader_sim.text_of(r["digits"], c) for r, c in zip(recs, reader_sim.classes(recs, pn, pr, 0.95, 0.6))]
    assert alone == _readings(reader=False)
    assert mixed == _readings(reader=True)


def test_score_counts_numbers_per_category_and_rule(recorded, capsys):
    rows = reader_sim.score([recorded], ["weights/reader"], [0.95, 1.01], [0.0, 0.6])
    rules = [f"gate {g} weight {w}" for g in (0.95, 1.01) for w in (0.0, 0.6)]
    assert [r["rule"] for r in rows] == ["net alone", *rules]
    assert all(r["of"] == N * len(CATS) and r["total"] == sum(r[c] for c in CATS) for r in rows)
    assert rows[1]["total"] == rows[0]["total"]  # weight 0: the reader has no say
    assert "net alone" in capsys.readouterr().out


def test_words_dropped_in_replay_as_segapp_drops_them_with_the_context_reader(tmp_path):
    path = tmp_path / "words.npz"
    cats = ["words", "words_natural"]
    reader_sim.main(["collect", "--categories", ",".join(cats), "--seed", "101", "--fonts", "dev", "--n", "6",
                     "--out", str(path)])
    z = np.load(path)
    recs = json.loads(str(z["recs"]))
    assert z["windows"].shape == (len(z["crops"]), 2, 32, 96) and any("ink" in d for r in recs for d in r["digits"])
    pr, _ = reader_sim.reader_probs(["weights/reader"], z["crops"])
    p_not = reader_sim.reader_probs(["weights/letters"], z["crops"])[1]
    p_letter = reader_sim.context_probs("weights/context", z["windows"])
    classes = reader_sim.classes(recs, z["pn"], pr, 0.95, 0.6)
    keeps = reader_sim.kept(recs, p_not, True, p_letter)
    replayed = [reader_sim.text_of([d for d, k in zip(r["digits"], keep) if k], [c for c, k in zip(cl, keep) if k])
                for r, cl, keep in zip(recs, classes, keeps)]
    seg = Segmenter("weights")
    real = [seg(data, f"{k}.{ext}").text for cat in cats
            for k, (data, ext, _, _) in enumerate(build(cat, 6, np.random.default_rng([101, CATEGORIES.index(cat)]),
                                                        "dev"))]
    assert replayed == real
    assert replayed != [reader_sim.text_of(r["digits"], cl) for r, cl in zip(recs, classes)]  # words were dropped


def test_glyphs_judges_each_recorded_glyph_against_the_truth(tmp_path):
    path = tmp_path / "words.npz"
    reader_sim.main(["collect", "--categories", "words", "--seed", "101", "--fonts", "dev", "--n", "8",
                     "--out", str(path)])
    recs = json.loads(str(np.load(path)["recs"]))
    truths = [d["truth"] for r in recs for d in r["digits"]]
    assert truths and all(0 <= t <= 1 for t in truths)
    (row,) = reader_sim.glyphs([path], "weights/letters", "weights/context")
    assert row["category"] == "words" and row["digits"] > 0 and row["letters"] > 0
    for judged in (v for v in row.values() if isinstance(v, dict)):
        assert judged["letters"] > judged["digits"] and judged["auc"] > 0.8  # letters told from digits, not inverted


def test_auc_is_the_chance_a_positive_outscores_a_negative():
    p = np.array([0.9, 0.8, 0.3, 0.3, 0.1])
    assert reader_sim._auc(p, np.array([True, True, False, False, False])) == 1.0
    assert reader_sim._auc(p, np.array([False, False, True, True, True])) == 0.0
    assert reader_sim._auc(p, np.array([True, False, True, False, False])) == pytest.approx(4.5 / 6)  # a tie: half

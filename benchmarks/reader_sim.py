"""Scores digit readers on recorded digits in seconds, instead of re-running the whole inference path per reader.

``collect`` runs the robustness benchmark's images through the inference path once, with the reread step
recording instead of reading, and records for every digit the net found its reading, confidence, the net's distribution
(:func:`segapp.reread.net_distribution`) and its canonical crop (:func:`segapp.reader.own_strokes`): everything
:func:`segapp.reread.reread` looks at. ``score`` then replays the reread rule (a digit under the gate is read
again, the two log-distributions mixed at a weight) for any readers, gates and weights and counts the numbers read
exactly, per category, beside the net alone; ``--confusions`` lists the digits each misreads. Reading order and
digit boxes come from the recording, so a rule scored here reads exactly what ``segapp predict`` would (checked by
``tests/test_reader_sim.py``). Several readers given with commas are averaged in log-probability (an ensemble).

    python -m benchmarks.reader_sim collect --seed 77 --fonts held --out runs/digits77.npz
    python -m benchmarks.reader_sim score weights/reader,runs/reader-x runs/digits77.npz --gates 0.95,0.99
    python -m benchmarks.reader_sim score weights/reader runs/words77.npz --letters weights/letters

With ``--letters`` (or readers that know letters) each rule is also scored with words dropped as
:func:`segapp.words.drop_words` drops them (:func:`kept`; the digits' boxes and ink are recorded for it), and with
``--context`` by a context reader's judgement too (each digit's window of its line is recorded for it).

    python -m benchmarks.reader_sim score weights/reader runs/words77.npz --letters weights/letters \
        --context weights/context

Each recorded digit also keeps its truth (the share of its box that is a digit's pixels in the benchmark's label
map), so ``glyphs`` tells how often the letters and context readers call a true digit or a true letter a letter
(session 39: on natural lines the context reader calls 21% of the digits letters, mostly typed numbers in the words'
own face).

    python -m benchmarks.reader_sim glyphs runs/words77.npz --context weights/context
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

import segapp.inference as inference
import segapp.readout as readout
import segapp.words as words
from segapp.classes import NUM_DIGITS
from segapp.context import WINDOW, letter_probability, load_context
from segapp.reader import load_letters, load_reader, read_crops
from segapp.reread import EPS, READER_WEIGHT, REREAD_BELOW, digit_crop, mix_scores, net_distribution
from segapp.words import IN_CONTEXT, LETTER_LIKELY, WITNESS, context_windows, dropped_in_line, ink_shapes

from .robustness import CATEGORIES, build

LETTER_SHARE = 0.04  # a glyph whose box is under this share a digit's pixels in the truth is a letter (or a speck)
WRITERS = ("hand", "hand_paper", "hand_photo", "hand_small", "grid", "real", "real_paper", "single")


def _record(digits, small, image, runner, reader, weight=0.0, letters=None, signs=None) -> None:
    """Stands in for :func:`segapp.reread.reread`: keeps each digit's crop and net distribution, changes nothing."""
    for d in digits:
        mine, d["_crop"] = digit_crop(d, small, image)
        d["_pn"] = net_distribution(d, mine, runner)


def _windows(digits: list[dict], small, image, reader) -> None:
    """Stands in for :func:`segapp.words.context_letters`: keeps each digit's window of its line, uint8."""
    for d, w in zip(digits, context_windows(digits, small, image)):
        d["_window"] = np.round(w * 255).astype(np.uint8)


def _ink(digits: list[dict], classes) -> list[dict]:
    """Stands in for :func:`segapp.words.drop_words` (which nothing reaches without the reader's ``_not_digit``):
    keeps each digit's net-scale box and ink (:func:`segapp.words.ink_shapes`) for the word cut's replay."""
    ink_shapes(digits, classes)
    for d in digits:
        if "_hull" in d:
            d["_ink"] = {"nbox": list(d["bbox"]), "hull": d.pop("_hull").tolist(), "slant": d.pop("_slant")}
    return digits


def collect(weights: str, categories: list[str], seed: int, fonts: str, n: int) -> dict:
    """Every digit the net finds in ``n`` images per category -> arrays for :func:`score` (see the module doc)."""
    real = readout.reread, words.drop_words, words.context_letters
    readout.reread = _record  # the postprocess calls it for every image: record instead of reading again
    words.drop_words, words.context_letters = _ink, _windows
    try:
        seg = inference.Segmenter(weights)
        if seg.reader is None:  # the weights have no reader: reread would not be called, so give it a stand-in
            seg.reader = object()
        seg.context = object()  # (a stand-in likewise: _windows records the windows any context reader would see)
        recs, crops, pns, wins = [], [], [], []
        for cat in categories:
            items = build(cat, n, np.random.default_rng([seed, CATEGORIES.index(cat)]), fonts)
            for k, (data, ext, lab, text) in enumerate(items):
                s = seg(data, f"{k}.{ext}")
                ds = []
                for d in s.digits:
                    j = -1
                    if d.get("_crop") is not None:
                        j = len(crops)
                        crops.append(d["_crop"])
                        pns.append(d["_pn"])
                        wins.append(d["_window"])
                    x0, y0, x1, y1 = d["bbox"]
                    box = lab[y0:y1, x0:x1]  # the truth: the share of its box that is a digit's pixels
                    truth = round(float((box < NUM_DIGITS).mean()) if box.size else 0.0, 3)
                    ds.append({"digit": d["digit"], "line": d["line"], "conf": d["confidence"], "j": j,
                               "bbox": d["bbox"], "truth": truth, **({"ink": d["_ink"]} if "_ink" in d else {})})
                recs.append({"cat": cat, "k": k, "text": text, "digits": ds})
    finally:
        readout.reread, words.drop_words, words.context_letters = real
    empty = np.zeros((0, 28, 28), np.float16)
    return {"crops": np.stack(crops).astype(np.float16) if crops else empty,
            "pn": np.stack(pns).astype(np.float32) if pns else np.zeros((0, 10), np.float32),
            "windows": np.stack(wins) if wins else np.zeros((0, 2, *WINDOW), np.uint8),
            "recs": np.array(json.dumps(recs))}


def text_of(digits: list[dict], classes: list[int]) -> str:
    """The reading of recorded digits given their classes: each line's digits space-separated, lines by newline."""
    lines: dict[int, list[str]] = {}
    for d, c in zip(digits, classes):
        lines.setdefault(d["line"], []).append(str(c))
    return "\n".join(" ".join(lines[k]) for k in sorted(lines))


def reader_probs(readers: list[str], crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``crops`` -> (N, 10) probabilities of the readers' mean log-probability (one reader: its own) and (N,) their
    mean probability of no digit at all (0 from readers without that class)."""
    if not len(crops):
        return np.zeros((0, 10), np.float32), np.zeros(0)
    logs, nots, flat = [], [], [c.astype(np.float32) for c in crops]
    for folder in readers:
        r = load_reader(folder)
        r = load_letters(folder) if r is None else r  # a letters folder may hold several readers, averaged
        if r is None:
            raise SystemExit(f"{folder}: no reader there (config.json + model.safetensors)")
        p, q = zip(*(read_crops(r, flat[i : i + 4096]) for i in range(0, len(flat), 4096)))
        logs.append(np.log(np.concatenate(p) + EPS))
        nots.append(np.concatenate(q))
    p = np.exp(np.mean(logs, 0))
    return p / p.sum(1, keepdims=True), np.mean(nots, 0)


def _glyph(d: dict) -> dict:
    """A recorded digit as :func:`segapp.words.words` takes it: its box and, where recorded, its ink brought from
    the net's scale to the input's (the box's own scale)."""
    if "ink" not in d:
        return d
    (a0, b0, a1, b1), (x0, y0, x1, y1) = d["ink"]["nbox"], d["bbox"]
    sx, sy = (x1 - x0) / max(a1 - a0, 1), (y1 - y0) / max(b1 - b0, 1)
    hull = (np.asarray(d["ink"]["hull"], np.float64) - (a0, b0)) * (sx, sy) + (x0, y0)
    return {**d, "_hull": hull, "_slant": d["ink"]["slant"] * sx / sy}


def kept(recs: list[dict], p_not: np.ndarray, drop: bool, p_letter: np.ndarray | None = None) -> list[list[bool]]:
    """Each record's digits that :func:`segapp.words.drop_words` keeps (``drop`` False: all), by the same rule
    (:func:`segapp.words.dropped_in_line`) on the recorded lines (boxes in input pixels: the gaps and heights scale
    with the glyphs), with the context reader's ``p_letter`` where given (:func:`context_probs`)."""
    out = []
    for r in recs:
        ds = r["digits"]
        keep = [True] * len(ds)
        pn = [float(p_not[d["j"]]) if d["j"] >= 0 else 0.0 for d in ds]
        pl = None if p_letter is None else [float(p_letter[d["j"]]) if d["j"] >= 0 else 0.0 for d in ds]
        if drop and max(pn, default=0.0) >= LETTER_LIKELY:
            for k in sorted({d["line"] for d in ds}):
                line = sorted((i for i, d in enumerate(ds) if d["line"] == k), key=lambda i: ds[i]["bbox"][0])
                gone = dropped_in_line([_glyph(ds[i]) for i in line], [pn[i] for i in line],
                                       None if pl is None else [pl[i] for i in line])
                for i, g in zip(line, gone):
                    keep[i] = not g
        out.append(keep)
    return out


def context_probs(folder: str, windows: np.ndarray) -> np.ndarray:
    """The context reader in ``folder`` on recorded windows (uint8) -> (N,) probability of a letter."""
    reader = load_context(folder)
    if reader is None:
        raise SystemExit(f"{folder}: no context reader there (config.json + model.safetensors)")
    parts = [letter_probability(reader, windows[i : i + 2048].astype(np.float32) / 255.0)
             for i in range(0, len(windows), 2048)]
    return np.concatenate(parts) if parts else np.zeros(0)


def classes(recs: list[dict], pn: np.ndarray, pr: np.ndarray | None, gate: float, weight: float) -> list[list[int]]:
    """Each record's digit classes under the reread rule (``pr`` None: the net alone)."""
    def one(d: dict) -> int:
        if pr is None or d["j"] < 0 or d["conf"] >= gate:
            return d["digit"]
        return int(mix_scores(pn[d["j"]], pr[d["j"]], weight).argmax())
    return [[one(d) for d in r["digits"]] for r in recs]


def score(files: list[Path], readers: list[str], gates: list[float], weights: list[float],
          confusions: bool = False, letters: str | None = None, context: str | None = None) -> list[dict]:
    """Numbers read exactly per category: the net alone, then each (gate, weight) rule, and where a reader tells
    letters (``letters``, a reader trained with them; None: the readers' own, where they know letters) each of those
    with words dropped as :func:`segapp.words.drop_words` drops them; printed and returned."""
    rows = []
    for f in files:
        z = np.load(f)
        recs, crops, pn = json.loads(str(z["recs"])), z["crops"], z["pn"]
        pr, p_not = reader_probs(readers, crops)
        if letters is not None:
            p_not = reader_probs([letters], crops)[1]
        p_letter = None if context is None else context_probs(context, z["windows"])
        cats = list(dict.fromkeys(r["cat"] for r in recs))
        lg = [False, True] if p_not.any() else [False]
        rules = [("net alone", None, 0.0, 0.0, False)] + [
            (f"gate {g} weight {w}" + (" words dropped" if x else ""), pr, g, w, x)
            for g in gates for w in weights for x in lg]
        for name, p, g, w, x in rules:
            cl = classes(recs, pn, p, g, w)
            ks = kept(recs, p_not, x, p_letter)
            right = collections.Counter(
                r["cat"] for r, c, k in zip(recs, cl, ks)
                if text_of([d for d, y in zip(r["digits"], k) if y], [c1 for c1, y in zip(c, k) if y]) == r["text"])
            row = {"file": str(f), "rule": name, **{c: right[c] for c in cats}, "total": sum(right.values()),
                   "of": len(recs)}
            rows.append(row)
            print(f"{f.name} {name:22s} " + " ".join(f"{c}={right[c]}" for c in cats) + f"  total {row['total']}"
                  f"/{len(recs)}")
        if confusions:
            wrong = collections.Counter()
            for r in recs:
                want = [int(c) for c in r["text"] if c.isdigit()]
                if len(want) == len(r["digits"]):
                    for t, d in zip(want, r["digits"]):
                        if d["j"] >= 0 and int(pr[d["j"]].argmax()) != t:
                            wrong[f"{t}->{int(pr[d['j']].argmax())}"] += 1
            print("  the reader alone misreads:", ", ".join(f"{k} {v}" for k, v in wrong.most_common(12)))
    return rows


def _auc(p: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties half)."""
    a, b = np.sort(p[positive]), p[~positive]
    if not len(a) or not len(b):
        return float("nan")
    below = np.searchsorted(a, b, "left")  # positives under each negative
    ties = np.searchsorted(a, b, "right") - below
    return float(1 - (below + ties / 2).sum() / (len(a) * len(b)))


def glyphs(files: list[Path], letters: str, context: str | None) -> list[dict]:
    """Each recorded glyph judged against the truth (:data:`LETTER_SHARE`), per category: how often the letters
    readers and the context reader call a true digit or a true letter a letter at the word rule's thresholds
    (:data:`~segapp.words.WITNESS`, :data:`~segapp.words.LETTER_LIKELY`, :data:`~segapp.words.IN_CONTEXT`), and
    each one's area under the ROC curve. Printed and returned."""
    rows: dict[str, list] = collections.defaultdict(list)
    for f in files:
        z = np.load(f)
        recs = json.loads(str(z["recs"]))
        p_not = reader_probs([letters], z["crops"])[1]
        p_letter = context_probs(context, z["windows"]) if context else np.zeros(len(p_not))
        for r in recs:
            for d in r["digits"]:
                if d["j"] >= 0 and "truth" in d:
                    rows[r["cat"]].append((d["truth"] < LETTER_SHARE, p_not[d["j"]], p_letter[d["j"]]))
    if not rows:
        print("no glyph truth in these recordings (collected before session 39): collect them again")
    out = []
    for cat, v in rows.items():
        a = np.array(v, np.float64)
        is_letter = a[:, 0] > 0
        row = {"category": cat, "digits": int((~is_letter).sum()), "letters": int(is_letter.sum())}
        judges = [("letters reader", 1, WITNESS), ("letters reader", 1, LETTER_LIKELY)]
        for name, col, cut in judges + ([("context reader", 2, IN_CONTEXT)] if context else []):
            p = a[:, col]
            row[f"{name} >= {cut}"] = {"digits": float(np.mean(p[~is_letter] >= cut)),
                                       "letters": float(np.mean(p[is_letter] >= cut)), "auc": _auc(p, is_letter)}
        out.append(row)
        print(f"{cat}: {row['digits']} digits, {row['letters']} letters; " + "; ".join(
            f"{k}: digits {v['digits']:.1%}, letters {v['letters']:.1%} (AUC {v['auc']:.3f})"
            for k, v in row.items() if isinstance(v, dict)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="job", required=True)
    c = sub.add_parser("collect", help="record the net's digits once")
    c.add_argument("--weights", default="weights")
    c.add_argument("--categories", default=",".join(WRITERS), help="comma-separated robustness categories")
    c.add_argument("--seed", type=int, default=77)
    c.add_argument("--fonts", default="held", choices=["dev", "held", "fresh"])
    c.add_argument("--n", type=int, default=100, help="images per category")
    c.add_argument("--out", type=Path, required=True, help=".npz to write")
    s = sub.add_parser("score", help="score readers on recorded digits")
    s.add_argument("readers", help="reader folders, comma-separated (several: averaged)")
    s.add_argument("files", nargs="+", type=Path, help=".npz files from collect")
    s.add_argument("--gates", default=str(REREAD_BELOW), help="comma-separated reread gates")
    s.add_argument("--mix", default=str(READER_WEIGHT), help="comma-separated reader weights")
    s.add_argument("--confusions", action="store_true", help="list what the reader alone misreads")
    s.add_argument("--letters", default=None, help="the reader that tells letters (default: the readers' own)")
    s.add_argument("--context", default=None, help="a context reader's folder (segapp train-context): words "
                   "dropped with it too, as segapp.words does")
    g = sub.add_parser("glyphs", help="how often each reader calls a true digit or letter a letter")
    g.add_argument("files", nargs="+", type=Path, help=".npz files from collect (words categories)")
    g.add_argument("--letters", default="weights/letters", help="the letters readers' folder")
    g.add_argument("--context", default="weights/context", help="a context reader's folder ('' for none)")
    a = ap.parse_args(argv)
    if a.job == "glyphs":
        glyphs(a.files, a.letters, a.context or None)
    elif a.job == "collect":
        cats = a.categories.split(",")
        unknown = sorted(set(cats) - set(CATEGORIES))
        if unknown:
            raise SystemExit(f"unknown categories {unknown}: choose from {', '.join(CATEGORIES)}")
        arrays = collect(a.weights, cats, a.seed, a.fonts, a.n)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + ".part.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(a.out)
        print(f"{a.out}: {len(arrays['crops'])} digits of {len(json.loads(str(arrays['recs'])))} images")
    else:
        score(a.files, a.readers.split(","), [float(g) for g in a.gates.split(",")],
              [float(w) for w in a.mix.split(",")], a.confusions, a.letters, a.context)


if __name__ == "__main__":
    main()

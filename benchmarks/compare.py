"""Two robustness runs side by side: what a candidate changed, category by category, against the product.

    python -m benchmarks.compare runs/r112-prod runs/r112-band [--miou-drop 0.003] [--read-drop 1]

Each argument is a ``benchmarks.robustness --out`` folder (or its ``results.json``) made on the same seed and fonts.
Every shipping rule since session 40 reads the same few columns (mIoU over digits, the masks' bleed and missed
pixels, numbers read as counts), so this prints them with their differences and marks a category whose mIoU fell by
more than ``--miou-drop`` or whose count of numbers read fell by more than ``--read-drop`` with ``!``. It prints;
the decision stays with the rule written before the data.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def load(path: Path) -> dict:
    """A run's per-category results (``results.json`` or the folder holding it)."""
    path = path / "results.json" if path.is_dir() else path
    return json.loads(path.read_text())["results"]


def compare(base: dict, cand: dict, miou_drop: float = 0.003, read_drop: int = 1) -> list[dict]:
    """One row per category both runs hold, in ``base``'s order: each figure before and after, numbers read as counts,
    and ``flag`` where the candidate lost more than the drops allow."""
    rows = []
    for cat, b in base.items():
        if cat not in cand:
            continue
        c = cand[cat]
        read_b, read_c = round(b["read"] * b["n"]), round(c["read"] * c["n"])
        d_miou = c["miou_digits"] - b["miou_digits"]
        lost = (not math.isnan(d_miou) and d_miou < -miou_drop) or read_c < read_b - read_drop
        rows.append({"category": cat, "miou": (b["miou_digits"], c["miou_digits"]),
                     "bleed": (b.get("bleed", math.nan), c.get("bleed", math.nan)),
                     "missed": (b.get("missed", math.nan), c.get("missed", math.nan)),
                     "read": (read_b, read_c), "n": (b["n"], c["n"]), "flag": lost})
    return rows


def format_rows(rows: list[dict]) -> str:
    """The rows as a fixed-width table; unchanged categories say so in one word."""
    out = [f"{'category':14s} {'mIoU digits':>24s} {'bleed':>15s} {'missed':>15s} {'read':>12s}"]
    total = [0, 0]
    for r in rows:
        (mb, mc), (bb, bc), (sb, sc), (rb, rc) = r["miou"], r["bleed"], r["missed"], r["read"]
        total[0] += rb
        total[1] += rc
        same = (rb == rc and (mb == mc or (math.isnan(mb) and math.isnan(mc))))
        if same:
            out.append(f"{r['category']:14s} {'same':>24s}")
            continue
        out.append(f"{r['category']:14s} {mb:7.4f} -> {mc:7.4f} {mc - mb:+.4f} {bb:6.2%} -> {bc:6.2%} "
                   f"{sb:6.2%} -> {sc:6.2%} {rb:4d} -> {rc:4d}{'  !' if r['flag'] else ''}")
    out.append(f"{'numbers read':14s} {total[0]} -> {total[1]} ({total[1] - total[0]:+d})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path, help="the product's run (--out folder or results.json)")
    p.add_argument("candidate", type=Path, help="the candidate's run on the same seed and fonts")
    p.add_argument("--miou-drop", type=float, default=0.003, help="mIoU a category may lose unflagged")
    p.add_argument("--read-drop", type=int, default=1, help="numbers a category may lose unflagged")
    a = p.parse_args(argv)
    rows = compare(load(a.base), load(a.candidate), a.miou_drop, a.read_drop)
    print(format_rows(rows))
    return rows


if __name__ == "__main__":
    main()

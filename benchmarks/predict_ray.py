"""What `segapp predict --cluster ray` costs and gives on one machine: files/s of the plain path beside Ray Data with
1 and 2 local workers (segmenter actors), and Ray's start-up cost.

Each configuration runs as a user would run it (a fresh ``segapp predict`` process) twice: on 1 file, whose wall time
is the fixed cost of the command (Python, Ray's start-up, actors loading the model), and on N 64x84 M2NIST-recipe
PNGs. The steady rate is ``(N - 1) / (wall(N) - wall(1))``: files/s once everything is up, which is what grows with
machines; the whole-command rate ``N / wall(N)`` is what one run of N files sees. Run from the repository root::

    nice -n 10 .venv/bin/python -m benchmarks.predict_ray --files 1000 --json runs/predict_ray.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {  # name: extra flags of `segapp predict`
    "plain": [],
    "ray, 1 worker": ["--cluster", "ray", "--ray-cpus", "1", "--ray-actors", "1"],
    "ray, 2 workers": ["--cluster", "ray", "--ray-cpus", "2", "--ray-actors", "2"],
}


def write_pngs(folder: Path, n: int) -> None:
    """``n`` 64x84 canvases as PNGs (M2NIST recipe, test digits; repeated past the split's size)."""
    from PIL import Image

    from segapp.m2nist import make_split

    images, _ = make_split("test", n=min(n, 5000))
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(images[i % len(images)]).save(folder / f"{i:05d}.png")


def timed(src: Path, out: Path, extra: list[str], before: list[str] = ()) -> tuple[float, float]:
    """Wall seconds of one `segapp predict` command, and the in-run files/s it printed (``before``: global flags
    such as ``--threads N``, which go before the subcommand)."""
    cmd = [sys.executable, "-m", "segapp.cli", *before, "predict", str(src), "--out", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    m = re.search(r"\((\d+) predicted.* in ([\d.]+) s", p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"segapp predict {' '.join(extra)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, int(m.group(1)) / max(float(m.group(2)), 1e-9)


def measure(n_files: int, runs: int, log) -> dict:
    res = {name: {"wall_1_file_s": [], "wall_n_files_s": [], "in_run_files_per_s": []} for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="segapp-predict-ray-") as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        write_pngs(one, 1)
        write_pngs(many, n_files)
        for r in range(runs):
            for name, extra in CONFIGS.items():
                w1, _ = timed(one, Path(tmp) / f"o1-{r}-{len(res[name]['wall_1_file_s'])}-{name}", extra)
                wn, rate = timed(many, Path(tmp) / f"on-{r}-{name}", extra)
                for key, v in (("wall_1_file_s", w1), ("wall_n_files_s", wn), ("in_run_files_per_s", rate)):
                    res[name][key].append(round(v, 2))
                log(f"run {r + 1}/{runs} {name}: 1 file {w1:.1f} s, {n_files} files {wn:.1f} s "
                    f"({rate:.0f} files/s in-run)")
    for v in res.values():
        w1, wn = statistics.median(v["wall_1_file_s"]), statistics.median(v["wall_n_files_s"])
        v["start_up_s"] = round(w1, 2)
        v["steady_files_per_s"] = round((n_files - 1) / max(wn - w1, 1e-9), 1)
        v["whole_command_files_per_s"] = round(n_files / wn, 1)
    return {"files": n_files, "size": [64, 84], "runs": runs, "configs": CONFIGS, "results": res}


def table(doc: dict) -> str:
    lines = ["| path | start-up (1-file command) | steady files/s | whole command, N files |", "|---|---|---|---|"]
    for name, v in doc["results"].items():
        lines.append(f"| {name} | {v['start_up_s']:.1f} s | {v['steady_files_per_s']:.0f} | "
                     f"{v['whole_command_files_per_s']:.0f} files/s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=1000, help="64x84 PNGs in the timed folder")
    p.add_argument("--runs", type=int, default=1, help="repeats of each configuration (medians reported)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    doc = measure(a.files, a.runs, lambda msg: print(msg, file=sys.stderr, flush=True))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

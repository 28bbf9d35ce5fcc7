"""A wheel that works: `pip install .` (not editable) into a fresh venv outside the checkout, then from
another directory `segapp evaluate` scores the shipped weights as the checkout does and `segapp predict` works.

The fresh venv gets segapp's dependencies by a link to this environment's packages (torch is about 1 GB; nothing is
downloaded), minus this environment's own (editable) segapp, so only the installed wheel can answer.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
              ".hypothesis", "m2nist", "*.pt", "*.tmp")


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, segapp command, environment, a working directory outside the checkout) of a fresh install."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build leaves nothing (build/, egg-info) in the checkout
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = tmp / "deps"  # this environment's packages, without segapp
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("segapp", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site / "segapp_test_deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(SEGAPP_CACHE=str(tmp / "cache"), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", str(src)], cwd=tmp, env=env)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, venv / "bin" / "segapp", env, elsewhere


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_its_files_not_the_benchmarks(installed):
    python, _, env, elsewhere = installed
    code = ("import segapp, segapp.model as m, segapp.m2nist as d, segapp.paths as p, importlib.util as u; "
            "print(segapp.__file__); print(m.DEFAULT_WEIGHTS); print(d.MNIST_DIR); print(p.EXAMPLES_DIR); "
            "print(u.find_spec('benchmarks'))")
    package, weights, mnist, examples, benchmarks = run([python, "-c", code], elsewhere, env).stdout.split()
    venv = python.parent.parent
    for path in (package, weights, mnist, examples):
        assert Path(path).is_relative_to(venv), path  # the installed copy, not the checkout
    assert {p.name for p in Path(weights).iterdir()} >= {"config.json", "model.safetensors", "MODEL_CARD.md",
                                                         "metrics.json", "reader", "letters", "signs", "context",
                                                         "ink"}
    for part in ("reader", "signs", "context", "ink"):
        assert {p.name for p in (Path(weights) / part).iterdir()} >= {"config.json", "model.safetensors"}
    letters = sorted((Path(weights) / "letters").iterdir())  # the readers that tell letters, averaged (words.py)
    assert len(letters) == 2 and all({p.name for p in part.iterdir()} >= {"config.json", "model.safetensors",
                                                                          "args.json"} for part in letters)
    assert len(list(Path(mnist).glob("*.gz"))) == 4 and list(Path(examples).glob("*.png"))
    assert benchmarks == "None"


@pytest.mark.slow
def test_evaluate_from_elsewhere_reports_the_shipped_weights_figures(installed):
    _, segapp, env, elsewhere = installed
    got = json.loads(run([str(segapp), "evaluate", "--json", "--limit", "50"], elsewhere, env).stdout)
    here = json.loads(run([sys.executable, "-m", "segapp", "evaluate", "--json", "--limit", "50"], ROOT, env).stdout)
    assert got["n_images"] == 50 and got["data_fingerprint"] == here["data_fingerprint"]
    assert got["miou_digits"] == pytest.approx(here["miou_digits"], abs=1e-6) and got["miou_digits"] > 0.9


@pytest.mark.slow
def test_predict_from_elsewhere_on_a_folder(installed):
    _, segapp, env, elsewhere = installed
    images = elsewhere / "scans"
    shutil.copytree(ROOT / "data" / "examples", images, ignore=shutil.ignore_patterns("*.py"))
    run([str(segapp), "predict", "scans", "--out", "out", "--quiet"], elsewhere, env)
    rows = list(csv.DictReader((elsewhere / "out" / "summary.csv").open()))
    assert len(rows) == len(list(images.iterdir())) and {r["status"] for r in rows} == {"ok"}
    assert all((elsewhere / "out" / r["mask"]).is_file() for r in rows)

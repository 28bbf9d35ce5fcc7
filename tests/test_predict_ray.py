"""`segapp predict --cluster ray`: the same masks and summary as the single-process path, on a local Ray
cluster of 2 CPUs started here; a killed worker or an interrupted driver, then ``--resume``, finishes the job with
every file done once. Also: without Ray the flag says how to install it, and a bad ``--digit-height`` is one line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from imagefiles import snapshot, summary_rows, wait_for_rows
from PIL import Image

import segapp.predict
from segapp.cli import main
from segapp.paths import EXAMPLES_DIR as EXAMPLES

TIMING = ()  # summary fields that may differ between runs: none (rows carry no timings)


def examples_folder(root: Path) -> dict[str, str]:
    """Good images from data/examples under odd names (spaces, unicode, a sub-folder) plus a corrupt and an empty
    file; returns ``{file: 'ok' or part of the reason}``."""
    expected = {}
    for i, src in enumerate(sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))):
        rel = [f"a scan {i}{src.suffix}", f"sub/çà {i}{src.suffix}", f"sub/deeper/{i}{src.suffix}"][i % 3]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
        expected[rel] = "ok"
    (root / "sub" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    (root / "empty.jpg").write_bytes(b"")
    expected.update({"sub/corrupt.png": "corrupt", "empty.jpg": "empty file"})
    return expected


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "summary.jsonl").read_text(encoding="utf-8").splitlines()]


def predict(inp: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(inp), "--out", str(out), "--batch-size", "4", "--quiet", *extra])


def ray_predict(inp: Path, out: Path, *extra: str) -> int:
    return predict(inp, out, "--cluster", "ray", "--ray-actors", "2", *extra)


def same_results(a: Path, b: Path) -> None:
    """Byte-identical masks and overlays, the same summaries (CSV and JSONL, rows in the same order)."""
    ra, rb = rows(a), rows(b)
    assert [r["file"] for r in ra] == [r["file"] for r in rb]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in ra] == [
        {k: v for k, v in r.items() if k not in TIMING} for r in rb]
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    pa, pb = snapshot(a), snapshot(b)
    pngs = sorted(k for k in pa if k.endswith(".png"))
    assert pngs == sorted(k for k in pb if k.endswith(".png")) and pngs
    assert all(pa[k][0] == pb[k][0] for k in pngs)


def test_without_ray_the_flag_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    shutil.copyfile(EXAMPLES / "m2nist_test_0_85.png", tmp_path / "in" / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    before = snapshot(tmp_path)
    assert predict(tmp_path / "in", tmp_path / "out", "--cluster", "ray") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'segapp[ray]'" in err[0]
    assert snapshot(tmp_path) == before  # nothing written


@pytest.mark.parametrize("height", ["-3", "0", "1"])
def test_bad_digit_height_is_one_line_and_writes_nothing(height, tmp_path, monkeypatch, capsys):
    shutil.copyfile(EXAMPLES / "m2nist_test_0_85.png", tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)  # no --out: not even runs/predict/a may appear
    before = snapshot(tmp_path)
    assert main(["predict", "a.png", f"--digit-height={height}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--digit-height" in err[0] and "2 px or more" in err[0]
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs for this module's tests (`segapp predict --cluster ray` uses it as it is)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_equals_single_process_on_a_mixed_folder(cluster, tmp_path):
    root = tmp_path / "in"
    expected = examples_folder(root)
    before = snapshot(root)
    assert predict(root, tmp_path / "one") == 1  # two bad files
    assert ray_predict(root, tmp_path / "ray") == 1
    assert snapshot(root) == before  # INPUT untouched
    same_results(tmp_path / "one", tmp_path / "ray")
    for r in rows(tmp_path / "ray"):
        want = expected[r["file"]]
        assert r["status"] == "ok" if want == "ok" else (r["status"].startswith("error") and want in r["status"])
    assert not list((tmp_path / "ray").rglob("*.tmp"))


def clean_folder(root: Path, n: int) -> None:
    """``n`` 64x84 M2NIST-recipe canvases as PNGs."""
    from segapp.m2nist import make_split

    imgs = make_split("test", n=min(n, 40))[0]
    for i in range(n):
        path = root / f"p{i % 3}" / f"f {i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imgs[i % len(imgs)]).save(path)


def segment_workers() -> list[int]:
    """Pids of this test process's Ray actors that run the segmenter (descendants of this process only)."""
    parent, cmd = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd[int(d)] = Path(f"/proc/{d}/cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue

    def mine(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [p for p, c in cmd.items() if b"SegmentFiles" in c and mine(p)]


@pytest.mark.slow
def test_killed_worker_loses_only_its_batch(cluster, tiny_weights, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, 120)
    assert predict(root, tmp_path / "ref", "--weights", str(tiny_weights)) == 0
    result = {}
    job = threading.Thread(target=lambda: result.update(rc=ray_predict(root, out, "--weights", str(tiny_weights))))
    job.start()
    deadline, killed = time.monotonic() + 120, []
    while time.monotonic() < deadline and job.is_alive() and not killed:
        if summary_rows(out) >= 8:
            for pid in segment_workers()[:1]:
                os.kill(pid, signal.SIGKILL)  # mid-run: Ray restarts the actor and runs its batch again
                killed.append(pid)
        time.sleep(0.02)
    job.join(300)
    assert killed and result["rc"] == 0
    done = rows(out)
    assert len(done) == len({r["file"] for r in done}) == 120 and all(r["status"] == "ok" for r in done)
    finished = snapshot(out)
    assert ray_predict(root, out, "--weights", str(tiny_weights), "--resume") == 0
    assert snapshot(out) == finished  # nothing left to do, nothing rewritten
    same_results(tmp_path / "ref", out)


@pytest.mark.slow
def test_interrupted_driver_then_resume(cluster, tiny_weights, tmp_path, monkeypatch):
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, 60)
    assert predict(root, tmp_path / "ref", "--weights", str(tiny_weights)) == 0
    real, seen = segapp.predict.Tally.finish, [0]

    def ctrl_c_at_10(self, row):
        seen[0] += 1
        if seen[0] == 10:
            raise KeyboardInterrupt
        real(self, row)

    monkeypatch.setattr(segapp.predict.Tally, "finish", ctrl_c_at_10)
    assert ray_predict(root, out, "--weights", str(tiny_weights)) == 130
    monkeypatch.undo()
    assert 0 < len(rows(out)) < 60
    assert ray_predict(root, out, "--weights", str(tiny_weights), "--resume") == 0
    done = rows(out)
    assert len(done) == len({r["file"] for r in done}) == 60 and all(r["status"] == "ok" for r in done)
    same_results(tmp_path / "ref", out)
    assert np.array_equal(np.asarray(Image.open(out / done[0]["mask"])),
                          np.asarray(Image.open(tmp_path / "ref" / done[0]["mask"])))


@pytest.mark.slow
def test_killed_driver_then_resume(cluster, tiny_weights, tmp_path):
    """The issue's bar: `kill -9` of a driver that started its own Ray instance, then --resume: every file done
    once, none lost."""
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, 120)
    assert predict(root, tmp_path / "ref", "--weights", str(tiny_weights)) == 0
    cmd = [sys.executable, "-m", "segapp.cli", "predict", str(root), "--out", str(out), "--weights", str(tiny_weights),
           "--batch-size", "4", "--quiet", "--cluster", "ray", "--ray-cpus", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_rows(out, 10, 120, lambda: proc.poll() is None)
        proc.kill()
        assert proc.wait(60) == -signal.SIGKILL  # stopped mid-run, not finished
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # Ray's helper processes that driver started (its session)
    assert 10 <= len(rows(out)) < 120
    assert ray_predict(root, out, "--weights", str(tiny_weights), "--resume") == 0
    done = rows(out)
    assert len(done) == len({r["file"] for r in done}) == 120 and all(r["status"] == "ok" for r in done)
    same_results(tmp_path / "ref", out)
    assert not list(out.rglob("*.tmp"))


def test_more_actors_than_the_cluster_holds_is_refused(tmp_path, capsys):
    pytest.importorskip("ray.data")
    (tmp_path / "in").mkdir()
    shutil.copyfile(EXAMPLES / "m2nist_test_0_85.png", tmp_path / "in" / "a.png")
    before = snapshot(tmp_path)
    assert predict(tmp_path / "in", tmp_path / "out", "--cluster", "ray", "--ray-cpus", "2", "--ray-actors", "5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray-actors 5" in err[0] and "at most 2" in err[0]
    assert snapshot(tmp_path) == before  # refused before Ray starts or anything is written

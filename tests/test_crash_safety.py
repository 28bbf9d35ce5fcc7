"""kill -9 a real training process at random moments: nothing is lost beyond the epoch in progress."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from segapp.model import load_pretrained

pytestmark = pytest.mark.slow  # kills real training processes: seconds each

TINY = ["--train-size", "32", "--val-size", "8", "--batch-size", "16", "--widths", "4", "--epochs", "8"]


def start(out, *extra):
    cmd = [sys.executable, "-m", "segapp.cli", "--threads", "1", "train", *TINY, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def epochs_in_log(out):
    if not (out / "log.csv").exists():
        return []
    return [int(r["epoch"]) for r in csv.DictReader((out / "log.csv").open())]


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_then_resume(tmp_path, seed):
    rng = random.Random(seed)
    proc = start(tmp_path)
    deadline = time.monotonic() + 120
    while not (tmp_path / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))  # somewhere inside a later epoch, or mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)  # always loadable
    done = ckpt["epoch"]
    assert 1 <= done <= 8
    load_pretrained(tmp_path / "last.pt")
    load_pretrained(tmp_path)  # the best-so-far safetensors is complete too
    log = epochs_in_log(tmp_path)
    assert log == list(range(1, len(log) + 1)) and done - 1 <= len(log) <= done

    resumed = start(tmp_path, "--resume")
    assert resumed.wait(timeout=180) == 0
    assert epochs_in_log(tmp_path) == list(range(1, 9))  # no duplicated, no missing epochs
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 8
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # temp files of the killed run swept

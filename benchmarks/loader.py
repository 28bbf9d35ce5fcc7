"""How fast `segapp train` makes its training images, the loader alone (no net), per ``--workers`` count.

    python -m benchmarks.loader [--workers 0,1,2] [--batches 30] [--wild 0.7] [--batch-size 64] [--json FILE]

On a GPU the net trains far faster than the CPUs draw the recipe's images (docs/train-your-own.md): measure this
first on a new machine and give ``segapp train --workers`` the count where images/s stops rising. The batches are
those of ``segapp.train_loop.epoch_loader`` for a ``TrainConfig`` with these settings, so the figure is the
training's own data path; the first batch (workers starting) is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from segapp.safeio import write_atomic
from segapp.train_config import TrainConfig, build_data
from segapp.train_loop import epoch_loader


def images_per_second(workers: int, batches: int, wild: float, batch_size: int, seed: int = 0) -> float:
    """Training images per second from ``batches`` batches of epoch 1 with ``workers`` DataLoader workers (OpenCV's
    thread count, which the loader sets to one for workers, is restored after: a later count starts as it found it)."""
    import cv2

    threads = cv2.getNumThreads()
    cfg = TrainConfig(wild=wild, train_size=batch_size * (batches + 1), val_size=batch_size, batch_size=batch_size,
                      seed=seed, workers=workers).resolved()
    train_set, _ = build_data(cfg)
    batches_of = iter(epoch_loader(train_set, cfg, epoch=1))
    next(batches_of)  # workers start and the first batch is made: not timed
    t0, n = time.perf_counter(), 0
    for x, _ in batches_of:
        n += len(x)
    seconds = time.perf_counter() - t0
    cv2.setNumThreads(threads)
    return n / seconds


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loader", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default=f"0,1,{os.cpu_count() or 1}", help="comma-separated worker counts")
    p.add_argument("--batches", type=int, default=30, help="timed batches per count")
    p.add_argument("--wild", type=float, default=TrainConfig().wild, help="as segapp train --wild")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", default=None, help="also write the rows here")
    a = p.parse_args(argv)
    rows = []
    for w in dict.fromkeys(int(s) for s in a.workers.split(",")):
        rows.append({"workers": w, "images_per_s": round(images_per_second(w, a.batches, a.wild, a.batch_size), 1),
                     "cpus": os.cpu_count(), "wild": a.wild, "batch_size": a.batch_size})
        print(f"--workers {w}: {rows[-1]['images_per_s']:.0f} training images/s (loader alone)", flush=True)
    if a.json:
        write_atomic(a.json, (json.dumps(rows, indent=2) + "\n").encode())
    return rows


if __name__ == "__main__":
    main()

"""How well can a classifier that *has* seen these writers read the real-digit set? An in-domain ceiling.

    python -m benchmarks.real_ceiling                   # 3 seeds x 150 epochs, both directions, about 2 min on 2 cores
    python -m benchmarks.real_ceiling --seeds 1 --epochs 20   # a quick look

The robustness benchmark's real people's digits (``real``, ``real_paper``) are the UCI optical digits' test file,
each digit kept only as 8x8 counts (``benchmarks/data/SOURCE.md``). segapp never sees one in training. To tell how
much of its error is the set's own ambiguity, this trains classifiers on one half of the file (the development half
or the held half, :func:`benchmarks.handwriting.real_digits`) and reads the other half's digits upright:

- k-nearest neighbours (k = 1, 3, 5) on the 64 counts;
- a small CNN on the 8x8 grid, with shifts, rotations and scaling as augmentation.

Both see the test half's writers' style through the other half (the halves are lines of one file of 13 writers),
which segapp never does; the figure to compare is segapp's per-digit accuracy on single upright digits
(docs/robustness.md, session 17: 97.7% of the development half).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.handwriting import real_digits


def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int) -> float:
    """Share of ``x_test`` whose majority label among the ``k`` nearest (Euclidean) training rows is right."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    d = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]  # (test, train) squared distances
    nearest = np.argsort(d, 1, kind="stable")[:, :k]
    votes = np.array([np.bincount(y_train[row], minlength=10).argmax() for row in nearest])
    return float((votes == y_test).mean())


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 10))


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each (1, 8, 8) grid rotated by up to +-11 degrees, scaled 0.9-1.1x and shifted by up to half a cell."""
    n = len(x)
    angle, scale = (torch.rand(n, generator=g) - 0.5) * 0.4, 1 + (torch.rand(n, generator=g) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    theta[:, :, 2] = (torch.rand(n, 2, generator=g) - 0.5) * 0.25  # in units of half the grid: +-0.5 cell
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


def cnn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, epochs: int,
                 seed: int) -> float:
    """Share of ``x_test`` (N, 8, 8) in [0, 1] read right by a small CNN trained on ``x_train`` for ``epochs``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net, xt, yt = _cnn(), torch.tensor(x_train[:, None], dtype=torch.float32), torch.tensor(y_train)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            loss = F.cross_entropy(net(_jitter(xt[idx], g)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.tensor(x_test[:, None], dtype=torch.float32)).argmax(1).numpy()
    return float((pred == y_test).mean())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="CNN trainings per direction")
    p.add_argument("--epochs", type=int, default=150)
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # a tiny net: threads cost more than they give
    halves = {name: real_digits(name) for name in ("dev", "held")}
    results = {}
    for train, test in (("dev", "held"), ("held", "dev")):
        (xa, ya), (xb, yb) = halves[train], halves[test]
        row = {f"knn{k}": knn_accuracy(xa, ya, xb, yb, k) for k in (1, 3, 5)}
        row["cnn"] = [cnn_accuracy(xa, ya, xb, yb, a.epochs, seed) for seed in range(a.seeds)]
        results[f"{train}->{test}"] = row
        knn = "  ".join(f"{k} {v:.1%}" for k, v in row.items() if k != "cnn")
        print(f"train {train}, read {test} ({len(yb)} digits, upright): {knn}  "
              f"CNN {' '.join(f'{v:.1%}' for v in row['cnn'])}")
    return results


if __name__ == "__main__":
    main()

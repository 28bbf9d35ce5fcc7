"""An experiment, not a product feature: `segapp train` with a digit-level loss added (session 27).

The reading decides a digit's class from all its pixels (``segapp.postprocess.vote_blobs``: summed
log-probabilities), while the net is trained pixel by pixel. This adds, per true digit (a connected part of one
class in the label map, 20 pixels or more), a cross-entropy on the mean log-probability of each digit class over
its pixels, weighted by the digit's size: a signal about the pooled decision, where real people's borderline shapes
are lost. Every other part of the run is `segapp train`'s own (its flags, data, blend, files)::

    python -m benchmarks.digit_loss 0.5 -- --init weights --wild 0.7 --epochs 2 --train-size 40000 \\
        --batch-size 64 --lr 5e-4 --seed 62 --workers 1 --blend 0.5 --out runs/digit62

Results: docs/robustness.md, session 27. One process only (the torchrun loss is not extended).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import torch

import segapp.train as train_job
import segapp.train_loop as train_loop
from segapp.classes import NUM_DIGITS

MIN_PART = 20  # px: smaller parts of one class in a label map are stroke fragments, not digits


def digit_parts(y: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(N, H, W) label maps -> (N, H, W) int64 part ids (0: none) and each part's class (id k -> classes[k - 1])."""
    ids, classes = np.zeros(y.shape, np.int64), []
    for i, labels in enumerate(y):
        for c in np.unique(labels):
            if c >= NUM_DIGITS:  # background and void
                continue
            n, lab, stats, _ = cv2.connectedComponentsWithStats((labels == c).astype(np.uint8), connectivity=8)
            for b in range(1, n):
                if stats[b, cv2.CC_STAT_AREA] >= MIN_PART:
                    classes.append(int(c))
                    ids[i][lab == b] = len(classes)
    return ids, classes


def digit_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Size-weighted cross-entropy of each true digit's mean log-probabilities (a scalar; 0 without digits)."""
    ids, classes = digit_parts(y.cpu().numpy())
    if not classes:
        return logits.sum() * 0
    idx = torch.from_numpy(ids).to(logits.device).flatten()
    keep = idx > 0
    logp = logits.log_softmax(1)[:, :NUM_DIGITS].transpose(0, 1).reshape(NUM_DIGITS, -1)  # (10, N*H*W)
    sums = torch.zeros(len(classes) + 1, NUM_DIGITS, device=logits.device).index_add_(0, idx[keep], logp[:, keep].T)
    size = torch.bincount(idx[keep], minlength=len(classes) + 1)[1:].float()
    scores = sums[1:] / size.unsqueeze(1)
    ce = torch.nn.functional.cross_entropy(scores, torch.tensor(classes, device=logits.device), reduction="none")
    return (ce * size).sum() / size.sum()


def main(argv: list[str]) -> None:
    weight, train_args = float(argv[0]), argv[argv.index("--") + 1 :]
    pixel_loss = train_loop.build_loss

    def build_loss(cfg):
        base = pixel_loss(cfg)
        return lambda logits, y: base(logits, y) + weight * digit_loss(logits, y)

    train_job.build_loss = build_loss  # the job builds its loss from this name
    from segapp.cli import main as segapp_main

    segapp_main(["train", *train_args])


if __name__ == "__main__":
    main(sys.argv[1:])

"""Segmentation metrics from a running confusion matrix (update per batch, compute once).

IoU, Dice and accuracy are computed by ``segmentation_models_pytorch.metrics`` from the per-class
true/false positive/negative counts the matrix holds, accumulated over the whole dataset
("micro" per class), so a class's IoU does not depend on how images are batched.
"""

from __future__ import annotations

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch

from .classes import BACKGROUND, CLASS_NAMES, NUM_CLASSES, needs_review


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch of class maps (any shape, same for both)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        t, p = target.reshape(-1).long().cpu(), pred.reshape(-1).long().cpu()
        if t.numel() and (t.min() < 0 or t.max() >= self.num_classes or p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(f"class indices must lie in [0, {self.num_classes - 1}]")
        self.matrix += torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )

    def stats(self) -> tuple[torch.Tensor, ...]:
        """Per-class tp, fp, fn, tn, each shaped (1, C) as ``smp.metrics`` expects."""
        m = self.matrix
        tp = m.diag()
        fp, fn = m.sum(0) - tp, m.sum(1) - tp
        tn = m.sum() - tp - fp - fn
        return tuple(x.unsqueeze(0) for x in (tp, fp, fn, tn))

    def compute(self) -> dict:
        """Returns the metrics as plain Python numbers (JSON-ready).

        A class that appears neither in the targets nor in the predictions has no defined IoU;
        it is reported as NaN and left out of the means.
        """
        tp, fp, fn, tn = self.stats()
        present = ((tp + fp + fn) > 0)[0]
        iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction="none")[0]
        dice = smp.metrics.f1_score(tp, fp, fn, tn, reduction="none")[0]
        iou[~present], dice[~present] = float("nan"), float("nan")
        digits = torch.arange(self.num_classes) != BACKGROUND
        total = int(self.matrix.sum())
        # Where a mask strays, as shares of the true digit pixels (issue 20's "masks bleed"): ``bleed`` counts
        # background pixels (ink-less paper, outside the void band) coloured as any digit, ``missed`` digit pixels
        # left background. A digit read as another digit is in neither: it is a misread, not a mask's edge.
        has_bg = BACKGROUND < self.num_classes  # (a toy matrix of fewer classes has no background)
        true_digit = int(self.matrix[digits].sum()) if has_bg else 0
        bleed = int(self.matrix[BACKGROUND, digits].sum()) if has_bg else 0
        missed = int(self.matrix[digits, BACKGROUND].sum()) if has_bg else 0
        return {
            "miou": float(iou[present].mean()) if present.any() else float("nan"),
            "miou_digits": float(iou[present & digits].mean()) if (present & digits).any() else float("nan"),
            "mdice": float(dice[present].mean()) if present.any() else float("nan"),
            "mdice_digits": float(dice[present & digits].mean()) if (present & digits).any() else float("nan"),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "per_class_iou": [float(v) for v in iou],
            "per_class_dice": [float(v) for v in dice],
            "n_pixels": total,
            "bleed": bleed / true_digit if true_digit else float("nan"),
            "missed": missed / true_digit if true_digit else float("nan"),
        }


BOUNDARY_TOLERANCE = 2  # px: a boundary pixel within this distance of the true boundary counts as right


def boundaries(classes: np.ndarray) -> np.ndarray:
    """(H, W) bool: digit pixels with a 4-neighbour of another class (the inner edge of each digit's mask)."""
    c = np.pad(classes, 1, mode="edge")
    centre = c[1:-1, 1:-1]
    edge = (c[:-2, 1:-1] != centre) | (c[2:, 1:-1] != centre) | (c[1:-1, :-2] != centre) | (c[1:-1, 2:] != centre)
    return edge & (centre != BACKGROUND)


class BoundaryScore:
    """Boundary F-score of digit masks (DAVIS's F, Cityscapes' boundary metric), summed over a dataset.

    Area overlap (IoU) hides where a mask goes wrong: a halo one pixel wide around every stroke costs a
    thin digit half its IoU, a missing stroke end almost nothing. The boundary score asks instead whether
    each predicted edge pixel lies within :data:`BOUNDARY_TOLERANCE` px of a true edge of the same digit
    class (precision) and each true edge pixel within that of a predicted one (recall). ``void`` pixels
    of the truth (the faint edge band) count as background for the true boundary and are where a
    predicted boundary may fall freely: its pixels there are left out of precision.
    """

    def __init__(self, tolerance: int = BOUNDARY_TOLERANCE):
        self.tolerance = tolerance
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
        self.matched_pred = self.pred = self.matched_true = self.true = 0

    def update(self, pred: np.ndarray, truth: np.ndarray, void: int | None = 255) -> None:
        """Adds one image: (H, W) class maps, ``truth`` possibly holding ``void``."""
        keep = np.ones(truth.shape, bool) if void is None else truth != void
        truth = np.where(keep, truth, BACKGROUND).astype(np.uint8)
        pb, tb = boundaries(pred), boundaries(truth)
        for d in np.union1d(np.unique(pred[pb]), np.unique(truth[tb])):
            p, t = pb & (pred == d), tb & (truth == d)
            near_t = cv2.dilate(t.astype(np.uint8), self.kernel).astype(bool)
            near_p = cv2.dilate(p.astype(np.uint8), self.kernel).astype(bool)
            counted = p & keep
            self.pred += int(counted.sum())
            self.matched_pred += int((counted & near_t).sum())
            self.true += int(t.sum())
            self.matched_true += int((t & near_p).sum())

    def compute(self) -> dict:
        """Precision, recall and F of digit boundaries (NaN where there is nothing to count)."""
        precision = self.matched_pred / self.pred if self.pred else float("nan")
        recall = self.matched_true / self.true if self.true else float("nan")
        if precision + recall > 0:
            f = 2 * precision * recall / (precision + recall)
        else:  # no edge within tolerance (0), or nothing to compare (NaN)
            f = 0.0 if precision == 0 and recall == 0 else float("nan")
        return {"boundary_f": f, "boundary_precision": precision, "boundary_recall": recall,
                "boundary_tolerance_px": self.tolerance}


def plot_confusion(matrix: torch.Tensor, path, title: str = "Confusion matrix (row-normalised)") -> None:
    """Saves the row-normalised confusion matrix as a PNG heat map with class names (PNG whatever the file name, so
    it can be written to a temp name and renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.double().numpy()
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [n if n != "background" else "bg" for n in CLASS_NAMES]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            if norm[i, j] >= 0.005:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def review(readings: list[tuple[float | None, bool]]) -> dict:
    """How well readings' own confidences point at their misreads, from (confidence, read right) pairs: the share of
    readings under :data:`~segapp.classes.REVIEW_BELOW` (``check``), the share of the misreads among them
    (``caught``; NaN when nothing was misread) and the read rate of the rest (``sure_read``). A reading of nothing
    has no confidence and is never flagged."""
    low = np.array([needs_review(c) for c, _ in readings], bool)
    ok = np.array([r for _, r in readings], bool)
    return {"check": float(low.mean()) if len(low) else float("nan"),
            "caught": float(low[~ok].mean()) if (~ok).any() else float("nan"),
            "sure_read": float(ok[~low].mean()) if (~low).any() else float("nan")}

"""Model + labelled images -> metrics: the numbers `segapp evaluate` and training's validation report."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .classes import BACKGROUND
from .data import fingerprint, load_kaggle, make_split, to_tensor
from .folders import VOID
from .metrics import BoundaryScore, ConfusionMatrix, plot_confusion
from .runtime import autocast


@torch.inference_mode()
def evaluate(
    model: nn.Module, images: np.ndarray, masks: np.ndarray, batch_size: int = 64,
    device: torch.device | None = None, amp: bool = False, desc: str | None = None,
) -> tuple[dict, ConfusionMatrix, float]:
    """Runs the model over (N, H, W) uint8 images and scores against (N, H, W) class maps.
    ``desc``: show a progress bar (images) on stderr under this name; None: no bar.

    Returns:
        The metrics dict, the confusion matrix, and the mean cross-entropy loss.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    cm, loss_sum = ConfusionMatrix(), 0.0
    bar = tqdm(total=len(images), desc=desc, unit="image", disable=desc is None, leave=False, mininterval=1,
               file=sys.stderr, dynamic_ncols=True)
    for i in range(0, len(images), batch_size):
        x = to_tensor(images[i : i + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.ascontiguousarray(masks[i : i + batch_size])).long().to(device)
        with autocast(device, amp):
            logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum", ignore_index=VOID))
        keep = y != VOID  # void pixels (folder datasets' masks) are not scored
        cm.update(logits.argmax(1)[keep], y[keep])
        bar.update(len(x))
    bar.close()
    model.train(was_training)
    return cm.compute(), cm, loss_sum / max(cm.matrix.sum().item(), 1)


def load_eval_data(split: str = "test", kaggle: Path | None = None, n: int | None = None, width: int = 84):
    """Images and class maps to score on: a Kaggle pair when given, else an M2NIST-recipe split."""
    if kaggle is not None:
        images, masks = load_kaggle(kaggle)
        return (images[:n], masks[:n]) if n else (images, masks)
    return make_split(split, n=n, width=width)


def true_text(mask: np.ndarray) -> str:
    """The digits a correct reading gives: the true class map read with the same rules as predictions."""
    from .render import Segmentation, read_digits

    classes = np.where(mask == VOID, BACKGROUND, mask).astype(np.uint8)
    return Segmentation.from_digits(classes, None, read_digits(classes, np.ones(mask.shape, np.float32))).text


def score_segmenter(segmenter, samples, progress: bool = False, total: int | None = None
                    ) -> tuple[dict, ConfusionMatrix, dict]:
    """Runs the one inference path over (Prepared, mask) samples: pixel metrics (void excluded) and reading.
    ``progress``: a progress bar on stderr (of ``total`` images, when given).

    Returns:
        Metrics, the confusion matrix, and extra figures: numbers read exactly, digit heights, scales.
    """
    from tqdm import tqdm

    cm, bf, right, n, scales = ConfusionMatrix(), BoundaryScore(), 0, 0, []
    for prepared, mask in tqdm(samples, total=total, unit="image", disable=not progress, desc="evaluate",
                               mininterval=1, dynamic_ncols=True):
        seg = segmenter.segment([prepared])[0]
        keep = mask != VOID
        cm.update(torch.from_numpy(seg.classes[keep]), torch.from_numpy(mask[keep]))
        bf.update(seg.classes, mask, VOID)
        right += seg.text == true_text(mask)
        n += 1
        scales.append(seg.scale)
    extra = {"numbers_read": right / max(n, 1), "rescaled_share": float(np.mean([s != 1.0 for s in scales]))}
    return {**cm.compute(), **bf.compute()}, cm, extra


OUT_FILES = ("metrics.json", "confusion.json", "confusion.png", "args.json")


def check_args(args) -> None:
    """One-line refusals for values that would crash or silently score nothing, and for an --out that holds results."""
    from .classes import SegappError

    limit, batch_size, width = getattr(args, "limit", None), getattr(args, "batch_size", 1), getattr(args, "width", 84)
    if limit is not None and limit < 1:
        raise SegappError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise SegappError(f"--batch-size must be at least 1, got {batch_size}")
    if not 28 <= width <= 4096:
        raise SegappError(f"--width must be 28..4096 (a digit is 28 pixels wide), got {width}")
    if getattr(args, "out", None) is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise SegappError(f"--out {out} is a file, not a folder")
        found = [n for n in OUT_FILES if os.path.lexists(out / n)]
        if found:
            raise SegappError(f"{out} already holds {', '.join(found)}; nothing was written; choose another --out "
                              "(segapp never replaces files it did not just create)")


def run(args) -> dict:
    """`segapp evaluate`: scores the weights through the inference path, prints a table (or JSON)."""
    import sys

    from .folders import find_pairs, load_pair
    from .images import Prepared
    from .inference import InferenceConfig, Segmenter

    check_args(args)
    cfg = InferenceConfig(device=args.device, rescale=getattr(args, "rescale", True),
                          digit_height=getattr(args, "digit_height", None), backend=getattr(args, "backend", "auto"))
    segmenter = Segmenter(args.weights, cfg)
    model = segmenter.model
    t0 = time.perf_counter()
    if getattr(args, "data", None):
        pairs = find_pairs(args.data)[: args.limit]
        samples = (load_pair(p) for p in pairs)
        n_images, data, fp, size = len(pairs), str(args.data), None, None
    else:
        images, masks = load_eval_data(args.split, args.kaggle, args.limit, args.width)
        samples = ((Prepared(img), m) for img, m in zip(images, masks))
        n_images, size = int(len(images)), list(images.shape[1:])
        data = str(args.kaggle) if args.kaggle else f"m2nist-recipe:{args.split}"
        fp = fingerprint(images, masks)
    quiet = getattr(args, "quiet", False) or args.json or not sys.stderr.isatty()
    metrics, cm, extra = score_segmenter(segmenter, samples, progress=not quiet, total=n_images)
    seconds = time.perf_counter() - t0
    metrics.update(extra)
    metrics.update(
        n_images=n_images, params=model.num_params(), receptive_field=model.receptive_field(),
        data=data, data_fingerprint=fp, image_size=size, rescale=cfg.rescale, digit_height=cfg.digit_height,
        weights=str(args.weights or "weights/"), seconds=round(seconds, 3), device=str(segmenter.device),
        backend=segmenter.backend,
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (out / "confusion.json").write_text(json.dumps(cm.matrix.tolist()) + "\n")
        plot_confusion(cm.matrix, out / "confusion.png", f"Confusion on {metrics['data']} (row-normalised)")
        (out / "args.json").write_text(json.dumps(vars(args), default=str, indent=2) + "\n")
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_report(metrics))
    return metrics


def format_report(m: dict) -> str:
    """Human-readable table of the headline and per-class metrics."""
    from .classes import CLASS_NAMES

    lines = [
        f"data: {m['data']}  images: {m['n_images']}"
        + (f"  size: {m['image_size'][0]}x{m['image_size'][1]}" if m.get("image_size") else ""),
        f"model: {m['params']:,} parameters, receptive field {m['receptive_field']} px",
        f"mean IoU (11 classes): {m['miou']:.4f}   mean IoU (digits): {m['miou_digits']:.4f}",
        f"mean Dice (11 classes): {m['mdice']:.4f}   pixel accuracy: {m['pixel_accuracy']:.4f}",
        f"numbers read exactly: {m['numbers_read']:.1%}   rescaled images: {m['rescaled_share']:.1%}",
        f"boundary F ({m['boundary_tolerance_px']} px): {m['boundary_f']:.4f}   "
        f"precision {m['boundary_precision']:.4f}   recall {m['boundary_recall']:.4f}",
        "class        IoU     Dice",
    ]
    for name, iou, dice in zip(CLASS_NAMES, m["per_class_iou"], m["per_class_dice"]):
        lines.append(f"{name:<10} {iou:7.4f}  {dice:7.4f}")
    return "\n".join(lines)

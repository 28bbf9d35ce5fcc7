"""Model + labelled images -> metrics: the numbers `segapp evaluate` and training's validation report."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .classes import BACKGROUND, REVIEW_BELOW, VOID, RecordedConfig, SegappError
from .datasets import to_tensor
from .kaggle import load_kaggle
from .m2nist import fingerprint, make_split
from .metrics import BoundaryScore, ConfusionMatrix, plot_confusion, review
from .runtime import autocast, progress_bar
from .safeio import write_atomic


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
    bar = progress_bar(total=len(images), desc=desc, unit="image", disable=desc is None, leave=False, mininterval=1,
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
    cm, bf, right, n, scales, readings = ConfusionMatrix(), BoundaryScore(), 0, 0, [], []
    for prepared, mask in progress_bar(samples, total=total, unit="image", disable=not progress, desc="evaluate",
                               mininterval=1, dynamic_ncols=True):
        seg = segmenter.segment([prepared])[0]
        keep = mask != VOID
        cm.update(torch.from_numpy(seg.classes[keep]), torch.from_numpy(mask[keep]))
        bf.update(seg.classes, mask, VOID)
        read = seg.text == true_text(mask)
        right += read
        readings.append((seg.confidence, read))
        n += 1
        scales.append(seg.scale)
    checked = review(readings)  # how well the readings' confidences point at the misreads (classes.REVIEW_BELOW)
    extra = {"numbers_read": right / max(n, 1), "rescaled_share": float(np.mean([s != 1.0 for s in scales])),
             "unsure_share": checked["check"],
             "misreads_unsure": None if np.isnan(checked["caught"]) else checked["caught"]}  # None: no misread
    return {**cm.compute(), **bf.compute()}, cm, extra


OUT_FILES = ("metrics.json", "confusion.json", "confusion.png", "args.json")


class EvaluateArgumentError(SegappError, ValueError):
    """A `segapp evaluate` argument whose value could only crash the run or score nothing."""


@dataclass(frozen=True)
class EvaluateConfig(RecordedConfig):
    """Every argument of `segapp evaluate`, with its defaults (see its ``--help``), checked on creation so that a
    config that exists can be scored.

    ``recorded``: what ``--out``'s args.json records. The CLI passes the command's parsed arguments, so the file
    says how the run was asked for (flag names, ``--threads``, argv); None records this config's own fields.
    """

    weights: Path | str | None = None  # None: the shipped weights/
    device: str = "auto"
    split: str = "test"  # M2NIST-recipe split, unless kaggle or data is given
    kaggle: Path | str | None = None  # a Kaggle-layout pair
    data: Path | str | None = None  # a folder dataset (whole images, not windows)
    limit: int | None = None  # only the first N images
    rescale: bool = True
    reader: bool = True  # each digit read again by the weights' digit reader (segapp.reread)
    drop_words: bool = True  # a word with a letter is not read (segapp.words; a reader trained with letters)
    ink_judge: bool = True  # small digits' masks follow the weights' ink judge (segapp.ink_judge)
    deskew: bool = True  # a tilted photo of a number is read turned upright (segapp.tilt)
    digit_height: float | None = None
    backend: str = "auto"
    width: int = 84  # canvas width of the recipe split
    as_json: bool = False  # one JSON object on stdout instead of the table
    out: Path | str | None = None  # also write metrics.json, confusion.json/.png and args.json here
    quiet: bool = False  # no progress bar (also none when stderr is not a terminal or with as_json)
    recorded: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise EvaluateArgumentError(f"--limit must be at least 1, got {self.limit}")
        if not 28 <= self.width <= 4096:
            raise EvaluateArgumentError(f"--width must be 28..4096 (a digit is 28 pixels wide), got {self.width}")
        self.freeze_record()


def check_out(out: Path | str | None) -> None:
    """Refuses an --out that is a file or already holds results, before anything is loaded or written."""
    if out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SegappError(f"--out {out} is a file, not a folder")
    found = [n for n in OUT_FILES if os.path.lexists(out / n)]
    if found:
        raise SegappError(f"{out} already holds {', '.join(found)}; nothing was written; choose another --out "
                          "(segapp never replaces files it did not just create)")


def run(cfg: EvaluateConfig) -> dict:
    """`segapp evaluate`: scores the weights through the inference path, prints a table (or JSON)."""
    from .inference import InferenceConfig, Segmenter

    check_out(cfg.out)
    inference = InferenceConfig(device=cfg.device, rescale=cfg.rescale, digit_height=cfg.digit_height,
                                backend=cfg.backend, reader=cfg.reader, drop_words=cfg.drop_words,
                                ink_judge=cfg.ink_judge, deskew=cfg.deskew)
    segmenter = Segmenter(cfg.weights, inference)
    model = segmenter.model
    t0 = time.perf_counter()
    samples, n_images, data, fp, size = _samples(cfg)
    quiet = cfg.quiet or cfg.as_json or not sys.stderr.isatty()
    metrics, cm, extra = score_segmenter(segmenter, samples, progress=not quiet, total=n_images)
    seconds = time.perf_counter() - t0
    metrics.update(extra)
    metrics.update(
        n_images=n_images, params=model.num_params(), receptive_field=model.receptive_field(),
        data=data, data_fingerprint=fp, image_size=size, rescale=inference.rescale,
        digit_height=inference.digit_height, weights=str(cfg.weights or "weights/"), seconds=round(seconds, 3),
        device=str(segmenter.device), backend=segmenter.backend,
    )
    if cfg.out:
        _write_out(cfg, Path(cfg.out), metrics, cm)
    print(json.dumps(metrics) if cfg.as_json else format_report(metrics))
    return metrics


def _samples(cfg: EvaluateConfig) -> tuple[Iterator, int, str, str | None, list[int] | None]:
    """The labelled images ``cfg`` asks for, streamed as (Prepared, mask) pairs, with what the metrics record
    about them: (samples, number of images, data name, fingerprint, image size). A folder dataset's images differ
    in size, so it has no single size, and it is not fingerprinted (reading it twice would cost a second pass)."""
    from .folders import find_pairs, load_pair
    from .images import Prepared

    if cfg.data:
        pairs = find_pairs(cfg.data)[: cfg.limit]
        return (load_pair(p) for p in pairs), len(pairs), str(cfg.data), None, None
    images, masks = load_eval_data(cfg.split, cfg.kaggle, cfg.limit, cfg.width)
    samples = ((Prepared(img), m) for img, m in zip(images, masks))
    data = str(cfg.kaggle) if cfg.kaggle else f"m2nist-recipe:{cfg.split}"
    return samples, int(len(images)), data, fingerprint(images, masks), list(images.shape[1:])


def _write_out(cfg: EvaluateConfig, out: Path, metrics: dict, cm: ConfusionMatrix) -> None:
    """``--out``: the metrics, the confusion matrix (numbers and picture) and the arguments of this evaluation, each
    written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    write_atomic(out / "confusion.json", (json.dumps(cm.matrix.tolist()) + "\n").encode())
    title = f"Confusion on {metrics['data']} (row-normalised)"
    write_atomic(out / "confusion.png", lambda p: plot_confusion(cm.matrix, p, title))
    write_atomic(out / "args.json", (json.dumps(cfg.record(), default=str, indent=2) + "\n").encode())


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
        f"readings under confidence {REVIEW_BELOW}: {m['unsure_share']:.1%}"
        + ("" if m["misreads_unsure"] is None else f", holding {m['misreads_unsure']:.1%} of the misreads"),
        f"boundary F ({m['boundary_tolerance_px']} px): {m['boundary_f']:.4f}   "
        f"precision {m['boundary_precision']:.4f}   recall {m['boundary_recall']:.4f}",
        f"mask bleed (background coloured as a digit): {m.get('bleed', float('nan')):.2%} of digit pixels   "
        f"missed: {m.get('missed', float('nan')):.2%}",
        "class        IoU     Dice",
    ]
    for name, iou, dice in zip(CLASS_NAMES, m["per_class_iou"], m["per_class_dice"]):
        lines.append(f"{name:<10} {iou:7.4f}  {dice:7.4f}")
    return "\n".join(lines)

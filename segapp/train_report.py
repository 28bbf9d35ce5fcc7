"""What a training run leaves to read: the log and curve per epoch, and at the end the test score and model card.

Every file is written to a temp name and renamed (:func:`segapp.safeio.write_atomic`), so killing the run at any
moment leaves the previous complete version of each file behind. Kept apart from the job (:mod:`segapp.train`)
because these are the run's outputs for people, not its state: ``last.pt`` (:mod:`segapp.train_resume`) is what a
run continues from.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import sys
from pathlib import Path

import torch

from .blend import TUNED
from .distill import grows
from .evaluate import evaluate  # scores the best weights on the test split
from .m2nist import fingerprint, make_split
from .model import NetConfig, load_pretrained
from .runtime import machine
from .safeio import write_atomic
from .train_config import TrainConfig, build_data


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, written atomically (fsynced, then renamed into place)."""
    text = json.dumps(obj, indent=2) + "\n"
    write_atomic(path, lambda p: Path(p).write_text(text), fsync=True)


def write_csv(path: Path, rows: list[dict], fields=None) -> None:
    """``rows`` as CSV (columns ``fields``, default the first row's keys; other keys left out), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields or rows[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda p: Path(p).write_text(buf.getvalue()), fsync=True)


def write_log(out: Path, history: list[dict]) -> None:
    write_csv(out / "log.csv", history)
    plot_curve(history, out / "curve.png")


def plot_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train (CE + Dice)")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="val (CE)")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.set_yscale("log"), a1.legend(), a1.grid(alpha=0.3)
    a2.plot(ep, [h["val_miou_digits"] for h in history], "o-", label="val mIoU digits")
    a2.plot(ep, [h["val_miou"] for h in history], "o-", label="val mIoU 11 classes")
    a2.set_xlabel("epoch"), a2.set_ylabel("mean IoU"), a2.legend(), a2.grid(alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=100, format="png"), fsync=True)
    plt.close(fig)


def finish(cfg: TrainConfig, out: Path, history: list[dict], device: torch.device, argv: list[str] | None = None,
           progress: bool = False, blended: dict | None = None) -> dict:
    """Scores the best weights (blended with the parent's when ``blended``, see :mod:`segapp.blend`) on the test
    split and writes metrics.json and the model card."""
    from .metrics import plot_confusion
    model = load_pretrained(out).to(device).to(memory_format=torch.channels_last)
    if cfg.kaggle:  # a user's own pair has no separate test split: report the held-out 10% (val)
        _, (images, masks) = build_data(cfg)
        data_name = f"kaggle pair {cfg.kaggle} (held-out 10%)"
    elif cfg.data:  # a folder dataset: its validation windows (`evaluate --data` scores whole images)
        _, (images, masks) = build_data(cfg)
        data_name = f"folder dataset {cfg.data} (validation windows)"
    else:
        images, masks = make_split("test")
        data_name = "M2NIST-recipe test split (MNIST test digits)"
    metrics, cm, _ = evaluate(model, images, masks, 128, device, desc="test" if progress else None)
    wall = sum(h["seconds"] for h in history)
    best = max(history, key=lambda h: h["val_miou_digits"])
    metrics.update(
        data=data_name, n_images=len(images), data_fingerprint=fingerprint(images, masks),
        params=model.num_params(), receptive_field=model.receptive_field(), best_epoch=best["epoch"],
        epochs=len(history), train_wall_seconds=round(wall, 1), machine=machine(), **(blended or {}),
    )
    write_json(out / "metrics.json", metrics)
    plot_confusion(cm.matrix, out / "confusion.png", "Test confusion (row-normalised)")
    write_card(cfg, out, metrics, argv)
    print(f"test ({data_name}): mIoU digits {metrics['miou_digits']:.4f}, 11-class {metrics['miou']:.4f}, "
          f"pixel accuracy {metrics['pixel_accuracy']:.4f}; wrote {out}", file=sys.stderr)
    return metrics


def write_card(cfg: TrainConfig, out: Path, m: dict, argv: list[str] | None = None) -> None:
    from .classes import CLASS_NAMES

    init = cfg.init
    parent = f"`{init}` (weights fingerprint {cfg.init_sha256}), fine-tuned" if init else "random initialisation"
    try:
        parent_widths = json.loads((Path(init) / "config.json").read_text())["widths"] if init else None
    except (OSError, ValueError, KeyError, TypeError):
        parent_widths = None
    if parent_widths is not None and list(parent_widths) != list(cfg.widths):
        how = "growing" if grows(parent_widths, cfg.widths) else "trimming"
        parent += (f" after {how} its widths {list(parent_widths)} to {list(cfg.widths)} (segapp.distill."
                   f"{'shrink: its strongest channels' if how == 'trimming' else 'grow: new channels start silent'})")
    if cfg.teacher:
        parent += (f"; distilled from `{cfg.teacher}` (weights fingerprint {cfg.teacher_sha256}; weight "
                   f"{cfg.distill_weight:g}, temperature {cfg.distill_temperature:g}; see segapp/distill.py)")
    if "blend" in m:
        other = f"`{cfg.blend_with}` (weights fingerprint {cfg.blend_with_sha256})" if cfg.blend_with else "parent"
        parent += (f"; final weights {1 - m['blend']:g} x {other} + {m['blend']:g} x fine-tuned (`--blend "
                   f"{m['blend_mode']}`, see segapp/blend.py; the fine-tuned alone: `{TUNED}`)")
    command = "segapp " + " ".join(shlex.quote(s) for s in (sys.argv[1:] if argv is None else argv))
    rows = "\n".join(f"| {n} | {iou:.4f} |" for n, iou in zip(CLASS_NAMES, m["per_class_iou"]))
    card = f"""# segapp model card

Decoder-free segmentation net: 3x3 convolutions with dilations {list(NetConfig().dilations)} and
widths {list(cfg.widths)}, each + BatchNorm + ReLU at full resolution, then a 1x1 head to 11 classes
(digits 0-9, background 10). No pooling, stride, upsampling or decoder.

| | |
|---|---|
| parameters | {m['params']:,} |
| receptive field | {m['receptive_field']} x {m['receptive_field']} px |
| produced by | `{command}` |
| started from | {parent} |
| epochs | {m['epochs']} (best val epoch {m['best_epoch']}) |
| training wall time | {m['train_wall_seconds'] / 60:.1f} min |
| machine | {m['machine']} |
| evaluated on | {m['data']}, {m['n_images']} images (fingerprint {m['data_fingerprint']}) |
| **test mean IoU, digits** | **{m['miou_digits']:.4f}** |
| test mean IoU, 11 classes | {m['miou']:.4f} |
| test mean Dice, 11 classes | {m['mdice']:.4f} |
| test pixel accuracy | {m['pixel_accuracy']:.4f} |

Per-class test IoU:

| class | IoU |
|---|---|
{rows}

Files: `config.json` + `model.safetensors` (the weights every segapp command loads by default),
`metrics.json` (these numbers), `log.csv` and `curve.png` (every epoch), `confusion.png`,
`args.json` (resolved arguments). Re-check with `segapp evaluate --weights {out}`.

Training data: the M2NIST recipe rebuilt from the original MNIST files (CC BY-SA 3.0, LeCun,
Cortes, Burges), see `data/mnist/SOURCE.md`.
"""
    write_atomic(out / "MODEL_CARD.md", lambda p: Path(p).write_text(card), fsync=True)

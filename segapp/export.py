"""`segapp export` and `segapp score`: labelled image folders in, mean IoU out.

`segapp export` writes M2NIST-recipe images as ordinary files (``images/00000.png``) with their
ground-truth masks (``truth/00000.png``, the same indexed-PNG format `segapp predict` writes),
either as the clean white-on-black originals or as dark ink on off-white paper (RGB, JPEG if
asked). `segapp score` compares a folder of predicted masks with a folder of true masks by
relative path and reports the same metrics as `segapp evaluate`, so the two can be checked
against each other on the same images.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .classes import CLASS_NAMES
from .predict_files import write_atomic
from .render import mask_image, read_mask

PAPER = np.array([250, 247, 238], np.float32)  # off-white paper
INK = np.array([20, 24, 60], np.float32)  # blue-black ink


def on_paper(gray: np.ndarray) -> np.ndarray:
    """White-on-black digits (H, W) uint8 -> RGB dark ink on paper, ink amount = MNIST intensity."""
    a = gray.astype(np.float32)[..., None] / 255.0
    return (PAPER * (1 - a) + INK * a).round().astype(np.uint8)


def export(out: Path, images: np.ndarray, masks: np.ndarray, style: str = "m2nist", fmt: str = "png",
           quality: int = 90) -> int:
    """Writes ``out/images/NNNNN.<fmt>`` and ``out/truth/NNNNN.png``; returns the number of pairs."""
    digits = max(5, len(str(len(images) - 1)))
    for i, (img, mask) in enumerate(zip(images, masks)):
        name = f"{i:0{digits}d}"
        pic, truth = io.BytesIO(), io.BytesIO()
        opts = {"format": "JPEG", "quality": quality} if fmt == "jpg" else {"format": "PNG"}
        Image.fromarray(on_paper(img) if style == "paper" else img).save(pic, **opts)
        mask_image(mask).save(truth, format="PNG")
        write_atomic(out / "images" / f"{name}.{fmt}", pic.getvalue())
        write_atomic(out / "truth" / f"{name}.png", truth.getvalue())
    return len(images)


def score(pred: Path, truth: Path) -> tuple[dict, list[str]]:
    """Mean IoU etc. of predicted masks against true masks matched by relative path.

    Returns:
        The metrics (as :meth:`ConfusionMatrix.compute`, plus ``n_scored``) and one problem line per
        true mask without a usable prediction (missing, other size, unreadable).
    """
    from .metrics import ConfusionMatrix  # imports segmentation_models_pytorch: seconds, so only when scoring

    cm, problems, n = ConfusionMatrix(), [], 0
    truths = sorted(p for p in truth.rglob("*.png") if p.is_file())
    if not truths:
        raise FileNotFoundError(f"{truth}: no .png masks found")
    for t in truths:
        rel = t.relative_to(truth)
        try:
            y, p = read_mask(t), read_mask(pred / rel)
            if p.shape != y.shape:
                raise ValueError(f"size {p.shape[1]}x{p.shape[0]} != true {y.shape[1]}x{y.shape[0]}")
            cm.update(torch.from_numpy(p), torch.from_numpy(y))
            n += 1
        except FileNotFoundError:
            problems.append(f"{rel}: no predicted mask in {pred}")
        except (OSError, ValueError) as e:
            problems.append(f"{rel}: {e}")
    return {**cm.compute(), "n_scored": n, "n_missing": len(problems)}, problems


def run_export(a: argparse.Namespace) -> int:
    from .data import make_split

    clash = [d for d in ("images", "truth") if (a.out / d).is_dir() and any(os.scandir(a.out / d))]
    if clash and not a.overwrite:
        print(f"segapp export: error: {a.out / clash[0]} is not empty; use --overwrite or another OUT", file=sys.stderr)
        return 2
    images, masks = make_split(a.split, n=a.n, seed=a.seed, width=a.width)
    n = export(a.out, images, masks, a.style, a.format, a.quality)
    print(f"segapp export: {n} {a.split} images {images.shape[1]}x{images.shape[2]} ({a.style}, {a.format}) -> "
          f"{a.out / 'images'}, true masks -> {a.out / 'truth'}")
    return 0


def run_score(a: argparse.Namespace) -> int:
    metrics, problems = score(a.pred, a.truth)
    for line in problems[:20]:
        print(f"segapp score: {line}", file=sys.stderr)
    if len(problems) > 20:
        print(f"segapp score: ... and {len(problems) - 20} more", file=sys.stderr)
    if a.json:
        print(json.dumps(metrics))
    else:
        print(f"scored {metrics['n_scored']} masks ({metrics['n_missing']} without a usable prediction)\n"
              f"mean IoU (11 classes): {metrics['miou']:.4f}   mean IoU (digits): {metrics['miou_digits']:.4f}\n"
              f"pixel accuracy: {metrics['pixel_accuracy']:.4f}\n"
              + "  ".join(f"{n}:{v:.3f}" for n, v in zip(CLASS_NAMES, metrics["per_class_iou"])))
    return 1 if problems else 0


def add_parsers(sub) -> None:
    """Registers `segapp export` and `segapp score`."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("export", help="write recipe test images + true masks as a folder of files", formatter_class=fmt,
                       description="Write M2NIST-recipe images as OUT/images/NNNNN.<png|jpg> and their true masks as "
                                   "OUT/truth/NNNNN.png, to try `segapp predict` and check it with `segapp score`. "
                                   "The same --split/--n/--width give the same images as `segapp evaluate`.")
    p.add_argument("out", type=Path, metavar="OUT", help="output folder")
    g = p.add_argument_group("images")
    g.add_argument("--split", choices=["train", "val", "test"], default="test", help="M2NIST-recipe split")
    g.add_argument("--n", type=int, default=1000, help="number of images")
    g.add_argument("--width", type=int, default=84, help="canvas width (224 holds up to 8 digits)")
    g.add_argument("--seed", type=int, default=None, help="composition seed (default: the split's own)%(default).0s")
    g = p.add_argument_group("files")
    g.add_argument("--style", choices=["m2nist", "paper"], default="m2nist",
                   help="m2nist: white on black, grayscale; paper: dark ink on off-white paper, RGB")
    g.add_argument("--format", choices=["png", "jpg"], default="png", help="image file format")
    g.add_argument("--quality", type=int, default=90, help="JPEG quality")
    g.add_argument("--overwrite", action="store_true", help="write into non-empty images/ and truth/ folders")
    p.set_defaults(run=run_export)

    p = sub.add_parser("score", help="mean IoU of a folder of predicted masks against true masks", formatter_class=fmt,
                       description="Match PRED/<rel>.png with TRUTH/<rel>.png (class-index PNGs such as `segapp "
                                   "predict` and `segapp export` write) and report mean IoU as `segapp evaluate` does. "
                                   "Exit status 1 when a true mask has no usable prediction.")
    p.add_argument("pred", type=Path, metavar="PRED_MASKS", help="folder of predicted masks, e.g. OUT/masks")
    p.add_argument("truth", type=Path, metavar="TRUTH_MASKS", help="folder of true masks, e.g. EXPORT/truth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run_score)

"""Fine-tuning on a new writing style, measured as a user would.

    python -m benchmarks.finetune_style [--out runs/finetune_style] [--weights weights] [--n 400] [--epochs 3]

Builds two folder datasets in the layout `segapp predict` writes (``images/`` + ``masks/``) in a
style the shipped model never saw, "outline pen" (every stroke drawn as a hollow double line, as a
felt-tip that skips in the middle or a stencil): one from MNIST *training* digits to fine-tune on,
one from MNIST *test* digits held out. Then runs, through the CLI:

1. ``segapp evaluate --data heldout`` and ``segapp evaluate`` (M2NIST test) with the parent weights;
2. ``segapp train --init WEIGHTS --data style --mix-recipe 0.5 --epochs E``;
3. the same two evaluations with the fine-tuned weights,

and prints the four numbers (held-out style mIoU over digits, M2NIST test mIoU over digits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.robustness import void_edges
from segapp.m2nist import compose, digit_pool
from segapp.mask_files import mask_image


def outline(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A canvas in the outline-pen style: strokes thickened, then hollowed; labels follow the ink."""
    ell = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    thick = cv2.dilate(img, ell)
    ink = cv2.subtract(thick, cv2.erode(thick, np.ones((3, 3), np.uint8)))
    ink = cv2.GaussianBlur(ink, (0, 0), 0.5)
    return ink, void_edges(ink, mask)


def thick_slant(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The issue's example of a new style: strokes drawn about twice as thick and slanted 20 degrees to the right
    (a shear about the canvas centre); labels follow the ink."""
    ell = np.ones((3, 3), np.uint8)  # one pixel more on each side of a 2-3 px MNIST stroke
    thick = cv2.dilate(img, ell)
    h, w = img.shape
    k = np.tan(np.radians(20))
    shear = np.float32([[1, -k, k * h / 2], [0, 1, 0]])  # top moves right: a forward slant
    ink = cv2.warpAffine(thick, shear, (w, h), flags=cv2.INTER_LINEAR)
    shifted = np.where(mask == 10, 0, mask + 1).astype(np.uint8)  # background 0, so that dilation grows digits
    lab = cv2.warpAffine(cv2.dilate(shifted, ell), shear, (w, h), flags=cv2.INTER_NEAREST)
    lab = np.where(lab == 0, 10, lab - 1).astype(np.uint8)  # back to classes, 10 = background
    return ink, void_edges(ink, lab)


STYLES = {"outline": outline, "thick-slant": thick_slant}


def build(folder: Path, split: str, n: int, seed: int, style: str = "outline") -> None:
    digits, labels = digit_pool(split)
    images, masks = compose(digits, labels, n, np.random.default_rng(seed))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for k, (img, m) in enumerate(zip(images, masks)):
        ink, lab = STYLES[style](img, m)
        Image.fromarray(ink).save(folder / "images" / f"{k:05d}.png")
        mask_image(lab).save(folder / "masks" / f"{k:05d}.png")


def segapp(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "segapp", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"segapp {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def scores(weights: str, heldout: Path) -> dict:
    style = json.loads(segapp("evaluate", "--data", str(heldout), "--weights", weights, "--json", "--quiet"))
    m2nist = json.loads(segapp("evaluate", "--weights", weights, "--json", "--quiet"))
    return {"style_miou_digits": round(style["miou_digits"], 4), "style_read": round(style["numbers_read"], 4),
            "m2nist_miou_digits": round(m2nist["miou_digits"], 4)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/finetune_style"))
    p.add_argument("--weights", default="weights")
    p.add_argument("--n", type=int, default=400, help="fine-tuning images (the held-out set has half as many)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=4000, help="training windows per epoch")
    p.add_argument("--mix-recipe", default="0.5", help="share of each epoch from the M2NIST recipe (+ --wild images)")
    p.add_argument("--wild", default="0.65", help="share of the recipe part that is real-world-like")
    p.add_argument("--lr", default=None, help="peak learning rate (default: train's fine-tuning default)")
    p.add_argument("--style", choices=sorted(STYLES), default="outline", help="the new writing style")
    p.add_argument("--blend", default="auto", help="segapp train --blend (auto, or 1 for the fine-tuned weights alone)")
    a = p.parse_args(argv)
    style, heldout, run = a.out / "style", a.out / "heldout", a.out / "run"
    if not style.exists():
        build(style, "train", a.n, seed=1, style=a.style)
        build(heldout, "test", a.n // 2, seed=2, style=a.style)
    before = scores(a.weights, heldout)
    print("before", json.dumps(before), flush=True)
    if not (run / "model.safetensors").exists():
        segapp("train", "--init", a.weights, "--data", str(style), "--mix-recipe", a.mix_recipe, "--wild", a.wild,
               "--epochs", str(a.epochs), "--train-size", str(a.train_size), "--out", str(run), "--blend", a.blend,
               *(["--lr", a.lr] if a.lr else []))
    after = scores(str(run), heldout)
    after["blend"] = json.loads((run / "metrics.json").read_text()).get("blend", 1.0)
    print("after ", json.dumps(after), flush=True)
    command = "python -m benchmarks.finetune_style " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"before": before, "after": after, "command": command.strip()}
    (a.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

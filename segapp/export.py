"""`segapp export` (ONNX model, or a labelled image folder) and `segapp score` (mean IoU of mask folders).

`segapp export --format onnx --out FILE` writes the net as ONNX (dynamic batch, height and width; see
:mod:`segapp.engines`), optionally int8 (``--int8``: ONNX Runtime static QDQ quantization calibrated on
M2NIST-recipe training images), and beside it ``FILE.parity.json``: torch and ONNX Runtime run on the
M2NIST-recipe test split, with the share of identical class-map pixels and both mean IoUs.

`segapp export --format folder --out DIR` writes M2NIST-recipe images as ordinary files
(``images/00000.png``) with their ground-truth masks (``truth/00000.png``, the same indexed-PNG format
`segapp predict` writes), either as the clean white-on-black originals or as dark ink on off-white paper
(RGB, JPEG if asked). `segapp score` compares a folder of predicted masks with a folder of true masks by
relative path and reports the same metrics as `segapp evaluate`, so the two can be checked against each
other on the same images.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .classes import CLASS_NAMES, SegappError
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


IDENTICAL_BAR = 0.9999  # share of class-map pixels where ONNX Runtime and torch must agree (fp32)
INT8_TOLERANCE = 0.003  # test mIoU over digits int8 may lose against fp32 to be worth shipping


def run_export(a) -> int:
    """`segapp export` for the arguments ``a`` (the flags of ``segapp export --help`` as attributes)."""
    if a.format == "onnx":
        return run_onnx(a)
    return run_folder(a)


def run_folder(a) -> int:
    from .data import make_split

    if a.n < 1:
        raise SegappError(f"--n {a.n}: give the number of images to write, at least 1")
    clash = [d for d in ("images", "truth") if (a.out / d).is_dir() and any(os.scandir(a.out / d))]
    if clash and not a.overwrite:
        raise SegappError(f"{a.out / clash[0]} is not empty; use --overwrite or another OUT")
    images, masks = make_split(a.split, n=a.n, seed=a.seed, width=a.width)
    n = export(a.out, images, masks, a.style, a.image_format, a.quality)
    print(f"segapp export: {n} {a.split} images {images.shape[1]}x{images.shape[2]} ({a.style}, {a.image_format}) -> "
          f"{a.out / 'images'}, true masks -> {a.out / 'truth'}")
    return 0


def run_onnx(a) -> int:
    """Exports, writes FILE and FILE.parity.json; 0 when the file meets its bar (fp32: parity; int8: mIoU within
    :data:`INT8_TOLERANCE` of fp32), 1 when not (the files are written either way); bad arguments raise
    :class:`SegappError` (one line, exit 2 from ``segapp.cli``)."""
    import time

    from .data import make_split
    from .engines import OnnxEngine, exporter_name, file_sha256, onnx_bytes, parity, set_metadata, state_digest
    from .int8 import INT8_CALIBRATION_DATA, INT8_PERCENTILE, calibration_images, quantize_int8
    from .model import load_pretrained

    out = Path(a.out)
    if out.is_dir() or out.suffix.lower() != ".onnx":
        raise SegappError(f"{out}: give a file name ending in .onnx (a labelled image folder is written "
                          "with `segapp export --format folder --out DIR`)")
    if min(a.calib_images, a.parity_images) < 1:
        raise SegappError("--calib-images and --parity-images must be at least 1")
    t0 = time.perf_counter()
    model = load_pretrained(a.weights).cpu().eval()
    digest = state_digest(model)
    fp32 = onnx_bytes(model, metadata={"segapp.weights_digest": digest, "segapp.precision": "fp32"})
    data, calib = fp32, None
    if a.int8:
        calib_images = calibration_images(a.calib_images)
        calib = {"data": INT8_CALIBRATION_DATA, "n_images": len(calib_images),
                 "method": f"percentile {INT8_PERCENTILE:g}", "format": "QDQ",
                 "weights": "int8, per output channel", "activations": "uint8",
                 "float_layers": "the first conv (1 input channel)"}
        data = set_metadata(quantize_int8(fp32, calib_images), {"segapp.precision": "int8"})
    write_atomic(out, data)
    export_s = time.perf_counter() - t0

    images, masks = make_split("test", n=a.parity_images)

    def torch_fp32(x):
        with torch.inference_mode():
            return model(x)

    engines = {"torch_fp32": torch_fp32, "onnx": OnnxEngine(out)}  # the file as written, in plain ONNX Runtime
    if a.int8:
        engines["onnx_fp32"] = OnnxEngine(fp32)
    results = parity(engines, images, masks, reference="torch_fp32")
    import onnxruntime

    record = {
        "file": out.name, "sha256": file_sha256(out), "bytes": out.stat().st_size,
        "precision": "int8" if a.int8 else "fp32", "exporter": exporter_name(), "onnxruntime": onnxruntime.__version__,
        "input": "image: float32 (N, 1, H, W) = pixel/255, white ink on black; N, H, W dynamic",
        "output": "logits: float32 (N, 11, H, W); argmax over dim 1 = class (0-9 digit, 10 background)",
        "weights": str(a.weights or "weights/"), "weights_digest": digest,
        "data": "m2nist-recipe:test", "n_images": int(len(images)), "image_size": list(images.shape[1:]),
        "reference": "torch fp32 (segapp.model.DilatedNet, eval mode)", "results": results,
        "export_seconds": round(export_s, 1), "threads": torch.get_num_threads(),
    }
    onnx_r, ref = results["onnx"], results["torch_fp32"]
    if a.int8:
        drop = results["onnx_fp32"]["miou_digits"] - onnx_r["miou_digits"]
        ok = drop <= INT8_TOLERANCE
        record.update(calibration=calib, int8_miou_digits_drop_vs_fp32=drop, int8_tolerance=INT8_TOLERANCE,
                      int8_within_tolerance=ok)
        fp = results["onnx_fp32"]["miou_digits"]
        verdict = (f"int8 mIoU digits {onnx_r['miou_digits']:.4f} vs ONNX fp32 {fp:.4f} (drop {drop:+.4f}; "
                   f"{'within' if ok else 'NOT within'} {INT8_TOLERANCE})")
    else:
        same = round(onnx_r["miou_digits"], 4) == round(ref["miou_digits"], 4)
        ok = onnx_r["identical_pixels"] >= IDENTICAL_BAR and same
        record.update(identical_pixels_bar=IDENTICAL_BAR, miou_digits_equal_4dp=same, parity_passed=ok)
        verdict = (f"identical class-map pixels {onnx_r['identical_pixels']:.6%} (bar {IDENTICAL_BAR:.2%}), "
                   f"mIoU digits torch {ref['miou_digits']:.4f} / ONNX {onnx_r['miou_digits']:.4f}: "
                   f"{'parity passed' if ok else 'PARITY FAILED'}")
    parity_path = out.with_name(out.name + ".parity.json")
    write_atomic(parity_path, (json.dumps(record, indent=2) + "\n").encode())
    print(f"segapp export: {record['precision']} ONNX model ({record['bytes']:,} bytes) -> {out}\n"
          f"segapp export: on {len(images)} test images: {verdict} -> {parity_path}")
    return 0 if ok else 1


def run_score(a) -> int:
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

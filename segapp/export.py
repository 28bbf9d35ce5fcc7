"""`segapp export` (ONNX model, or a labelled image folder) and `segapp score` (mean IoU of mask folders).

`segapp export --format onnx --out FILE` writes the net as ONNX (dynamic batch, height and width; see
:mod:`segapp.onnx_export`), optionally int8 (``--int8``: ONNX Runtime static QDQ quantization calibrated on
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .classes import CLASS_NAMES, SegappError
from .int8 import INT8_CALIBRATION, INT8_TOLERANCE
from .mask_files import mask_image, read_mask
from .safeio import file_sha256, write_atomic

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


class ExportArgumentError(SegappError, ValueError):
    """A `segapp export` argument that could only fail the export."""


@dataclass(frozen=True)
class ExportConfig:
    """Every argument of `segapp export` (see its ``--help``), with its defaults, checked on creation: the
    ``--format onnx`` options when exporting a model, the ``--format folder`` ones when writing images."""

    out: Path  # the .onnx file, or the output folder
    format: str = "onnx"  # "onnx" or "folder"
    weights: Path | str | None = None  # onnx: None is the shipped weights/
    int8: bool = False
    calib_images: int = INT8_CALIBRATION
    parity_images: int = 1000
    split: str = "test"  # folder: M2NIST-recipe split
    n: int = 1000
    width: int = 84
    seed: int | None = None  # None: the split's own
    style: str = "m2nist"  # or "paper"
    image_format: str = "png"  # or "jpg"
    quality: int = 90
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.format == "onnx":
            if self.out.is_dir() or self.out.suffix.lower() != ".onnx":
                raise ExportArgumentError(f"{self.out}: give a file name ending in .onnx (a labelled image folder is "
                                          "written with `segapp export --format folder --out DIR`)")
            if min(self.calib_images, self.parity_images) < 1:
                raise ExportArgumentError("--calib-images and --parity-images must be at least 1")
        elif self.n < 1:
            raise ExportArgumentError(f"--n {self.n}: give the number of images to write, at least 1")


@dataclass(frozen=True)
class ScoreConfig:
    """The arguments of `segapp score`: predicted and true mask folders, and the output form."""

    pred: Path
    truth: Path
    as_json: bool = False  # one JSON object instead of text

    def __post_init__(self) -> None:
        object.__setattr__(self, "pred", Path(self.pred))
        object.__setattr__(self, "truth", Path(self.truth))


def run_export(cfg: ExportConfig) -> int:
    """`segapp export` as ``cfg`` asks: the model as ONNX, or a labelled image folder."""
    if cfg.format == "onnx":
        return run_onnx(cfg)
    return run_folder(cfg)


def run_folder(cfg: ExportConfig) -> int:
    from .m2nist import make_split

    out = cfg.out
    clash = [d for d in ("images", "truth") if (out / d).is_dir() and any(os.scandir(out / d))]
    if clash and not cfg.overwrite:
        raise SegappError(f"{out / clash[0]} is not empty; use --overwrite or another OUT")
    images, masks = make_split(cfg.split, n=cfg.n, seed=cfg.seed, width=cfg.width)
    n = export(out, images, masks, cfg.style, cfg.image_format, cfg.quality)
    print(f"segapp export: {n} {cfg.split} images {images.shape[1]}x{images.shape[2]} ({cfg.style}, "
          f"{cfg.image_format}) -> {out / 'images'}, true masks -> {out / 'truth'}")
    return 0


def run_onnx(cfg: ExportConfig) -> int:
    """Exports, writes FILE and FILE.parity.json; 0 when the file meets its bar (fp32: parity; int8: mIoU within
    :data:`INT8_TOLERANCE` of fp32), 1 when not (the files are written either way); bad arguments raise
    :class:`SegappError` (one line, exit 2 from ``segapp.cli``)."""
    import time

    from .engines import OnnxEngine, parity, state_digest
    from .int8 import INT8_CALIBRATION_DATA, calibrate_int8, calibration_images
    from .m2nist import make_split
    from .model import load_pretrained
    from .onnx_export import exporter_name, onnx_bytes, set_metadata

    out = cfg.out
    t0 = time.perf_counter()
    model = load_pretrained(cfg.weights).cpu().eval()
    digest = state_digest(model)
    fp32 = onnx_bytes(model, metadata={"segapp.weights_digest": digest, "segapp.precision": "fp32"})
    images, masks = make_split("test", n=cfg.parity_images)
    data, calib = fp32, None
    if cfg.int8:
        calib_images = calibration_images(cfg.calib_images)
        q, kept, tried = calibrate_int8(model, calib_images, images, masks, INT8_TOLERANCE,
                                        metadata={"segapp.weights_digest": digest})
        calib = {"data": INT8_CALIBRATION_DATA, "n_images": len(calib_images),
                 "method": f"percentile {kept['percentile']:g}", "tried": tried, "format": "QDQ",
                 "weights": "int8, per output channel", "activations": "uint8",
                 "equalized": "the first layer's output channels to one range (segapp.int8.equalize_first)",
                 "float_layers": "the first conv (1 input channel)" if kept["float_convs"] == 1
                 else f"the first {kept['float_convs']} convs"}
        data = set_metadata(q, {"segapp.precision": "int8"})
    write_atomic(out, data)
    export_s = time.perf_counter() - t0

    def torch_fp32(x):
        with torch.inference_mode():
            return model(x)

    engines = {"torch_fp32": torch_fp32, "onnx": OnnxEngine(out)}  # the file as written, in plain ONNX Runtime
    if cfg.int8:
        engines["onnx_fp32"] = OnnxEngine(fp32)
    results = parity(engines, images, masks, reference="torch_fp32")
    import onnxruntime

    record = {
        "file": out.name, "sha256": file_sha256(out), "bytes": out.stat().st_size,
        "precision": "int8" if cfg.int8 else "fp32", "exporter": exporter_name(),
        "onnxruntime": onnxruntime.__version__,
        "input": "image: float32 (N, 1, H, W) = pixel/255, white ink on black; N, H, W dynamic",
        "output": "logits: float32 (N, 11, H, W); argmax over dim 1 = class (0-9 digit, 10 background)",
        "weights": str(cfg.weights or "weights/"), "weights_digest": digest,
        "data": "m2nist-recipe:test", "n_images": int(len(images)), "image_size": list(images.shape[1:]),
        "reference": "torch fp32 (segapp.model.DilatedNet, eval mode)", "results": results,
        "export_seconds": round(export_s, 1), "threads": torch.get_num_threads(),
    }
    onnx_r, ref = results["onnx"], results["torch_fp32"]
    if cfg.int8:
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


def run_score(cfg: ScoreConfig) -> int:
    """`segapp score`: prints the problems (20 at most) and the metrics; 1 when a true mask had no usable
    prediction."""
    metrics, problems = score(cfg.pred, cfg.truth)
    for line in problems[:20]:
        print(f"segapp score: {line}", file=sys.stderr)
    if len(problems) > 20:
        print(f"segapp score: ... and {len(problems) - 20} more", file=sys.stderr)
    if cfg.as_json:
        print(json.dumps(metrics))
    else:
        print(f"scored {metrics['n_scored']} masks ({metrics['n_missing']} without a usable prediction)\n"
              f"mean IoU (11 classes): {metrics['miou']:.4f}   mean IoU (digits): {metrics['miou_digits']:.4f}\n"
              f"pixel accuracy: {metrics['pixel_accuracy']:.4f}\n"
              + "  ".join(f"{n}:{v:.3f}" for n, v in zip(CLASS_NAMES, metrics["per_class_iou"])))
    return 1 if problems else 0

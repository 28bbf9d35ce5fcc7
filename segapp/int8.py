"""int8: the exported net quantized by ONNX Runtime, and the int8 graph a weights folder comes with.

* :func:`quantize_int8`: static quantization (QDQ, int8 weights per output channel, uint8 activations) with ranges
  calibrated on training-like images (:func:`calibration_images`), streamed a batch at a time.
* :func:`shipped_int8`: ``FOLDER/model.int8.onnx`` when it is the int8 graph of exactly the weights loaded
  (``segapp export --format onnx --int8 --out FOLDER/model.int8.onnx`` writes it; the shipped weights have one).
* :func:`int8_engine_for`: the engine ``--backend int8`` (and ``auto``, on CPUs, for weights that ship a graph)
  runs: that graph, else one quantized on first use and cached; checked on class maps before use.

How the calibration was chosen and what int8 costs in accuracy: docs/speed.md, "int8".
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .engines import OnnxEngine, cache_dir, parity, state_digest, store_cache_file, to_input
from .onnx_export import INPUT_NAME, EngineError, onnx_bytes, require_onnx_package

# training-like images the int8 ranges are calibrated on (as `segapp export`); calibration streams them a batch at a
# time (1.6 GB peak and about 30 s for 1024 images on 2 cores; 128 images all at once took 2.8 GB)
INT8_CALIBRATION = 1024
INT8_CALIBRATION_WILD = 0.65  # their share of real-world-like images, as `segapp train` draws them by default
INT8_CALIBRATION_DATA = f"m2nist-recipe:train + {INT8_CALIBRATION_WILD:g} wild (segapp.synth, MNIST training digits)"
INT8_PERCENTILE = 99.9999  # each activation range ends at this percentile of the calibration activations
# `segapp export --int8` tries these in turn until one is within tolerance of fp32: which one suits a net depends on
# a few extreme activations (session 10: a fine-tune lost 0.020 test mIoU at the 99.9999th, 0.0011 at the 99.999th)
INT8_PERCENTILES = (INT8_PERCENTILE, 99.999, 99.99)
# ... and then again with the second conv in float32 too, should a net still lose too much: a range shared by all
# channels of the first conv's output can leave most of them too few levels (session 20, before equalize_first: two
# GPU fine-tunes lost 0.013-0.020 at every percentile with one float conv, 0.0002 with two; the second conv is about
# a sixth of the multiply-adds, and the int8 graph ran 1.36x slower with it in float)
INT8_TRIES = tuple((p, 1) for p in INT8_PERCENTILES) + tuple((p, 2) for p in INT8_PERCENTILES)
INT8_TOLERANCE = 0.003  # test mIoU over digits int8 may lose against fp32 to be worth shipping (segapp export)
INT8_CHECK_IMAGES = 200  # M2NIST test canvases a graph quantized on first use is checked on (calibrate_int8)
INT8_AGREEMENT = 0.995  # share of class-map pixels int8 must share with torch on the probe images to be used


def calibration_images(n: int = INT8_CALIBRATION, wild: float = INT8_CALIBRATION_WILD) -> np.ndarray:
    """(n, 64, 84) uint8 images drawn as training draws them: M2NIST-recipe canvases and, a share ``wild`` of
    them, real-world-like ones (thick pens, photographs, blank paper's texture after normalisation), all from
    MNIST *training* digits. Why not the recipe alone: activation ranges calibrated on clean canvases clip on a
    photo's or a blank page's background, and int8 then reads digits on blank paper (14% of blank pages against
    2% in float, on the distilled net; docs/speed.md)."""
    from .datasets import WildM2NIST

    data = WildM2NIST(n, seed=12345, wild=wild)
    return np.stack([(data[i][0][0].numpy() * 255).round().astype(np.uint8) for i in range(n)])


INT8_FILE = "model.int8.onnx"  # beside a weights folder's model.safetensors: its int8 graph, made by `segapp export`


def shipped_int8(model: nn.Module, folder: Path | None) -> bytes | None:
    """The int8 graph a weights folder comes with (``folder/model.int8.onnx``, written by ``segapp export --format
    onnx --int8 --out FOLDER/model.int8.onnx``), None when there is none. A file that is not an int8 graph of
    exactly these weights (the weights digest in its metadata) is never used: :class:`EngineError` says why."""
    path = Path(folder) / INT8_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    onnx = require_onnx_package("onnx")
    remake = f"re-make it with: segapp export --format onnx --int8 --out {path}"
    try:
        data = path.read_bytes()
        meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    except Exception as e:  # unreadable, or not an ONNX model
        raise EngineError(f"{path}: not readable as an ONNX model ({type(e).__name__}); {remake}") from None
    if meta.get("segapp.weights_digest") != state_digest(model) or meta.get("segapp.precision") != "int8":
        raise EngineError(f"{path} is not the int8 graph of these weights (made from others); not used; {remake}")
    return data


def int8_engine_for(model: nn.Module, device: torch.device | None = None, threads: int | None = None,
                    use_cache: bool = True, data: bytes | None = None) -> OnnxEngine:
    """An int8 :class:`OnnxEngine` for a loaded torch net (``--backend int8``): exported, quantized as
    ``segapp export --int8`` does (:func:`calibrate_int8`: the first range percentile and float layers within
    tolerance of fp32 on :data:`INT8_CHECK_IMAGES` test canvases, calibrated on :func:`calibration_images`) and cached
    beside the fp32 graphs, so only the first use pays the ~30 s it takes. int8 cannot match float logits to
    1e-3, so the check before use compares class maps on recipe validation images: at least
    :data:`INT8_AGREEMENT` of their pixels must match torch's, else :class:`EngineError`. ``data``: a graph to
    use instead (:func:`shipped_int8`), checked the same way."""
    from .m2nist import make_split

    probe = make_split("val", n=16)[0]
    # the version in the key names the calibration recipe (INT8_CALIBRATION images, streamed, equalized, INT8_TRIES): a
    # graph cached under another version was calibrated differently and is not reused
    path = cache_dir() / f"{state_digest(model)[:32]}.int8v7.onnx"
    given = data is not None
    if not given:
        data = path.read_bytes() if use_cache and path.is_file() else None
    fresh = data is None
    if fresh:
        images, masks = make_split("test", n=INT8_CHECK_IMAGES)
        data, _, _ = calibrate_int8(model, calibration_images(), images, masks, INT8_TOLERANCE)
    engine = OnnxEngine(data, threads, device, precision="int8", class_outputs=True)
    engine.name = "int8"
    x = to_input(probe)
    with torch.inference_mode():
        want = copy.deepcopy(model).cpu().float().eval()(x).argmax(1)
    agree = float((engine(x).argmax(1) == want).float().mean())
    if agree < INT8_AGREEMENT:
        if not fresh and not given:  # a stale or damaged cache file: quantize anew
            return int8_engine_for(model, device, threads, use_cache=False)
        raise EngineError(f"the int8 graph agrees with the float net on only {agree:.2%} of probe pixels; use "
                          "--backend torch or onnx")
    if fresh:
        store_cache_file(path, data)
    return engine


def quantize_int8(fp32: bytes, calibration: np.ndarray, batch: int = 50, method: str = "percentile",
                  float_convs: int = 1, percentile: float = INT8_PERCENTILE) -> bytes:
    """ONNX Runtime static quantization of an exported net, QDQ format: weights int8 per output channel,
    activations uint8 with ranges calibrated on ``calibration`` ((N, H, W) uint8 images, e.g.
    :func:`calibration_images`). ``method``: ``percentile`` (each range ends at the :data:`INT8_PERCENTILE`
    percentile of its activations), ``minmax`` or ``entropy``; ``float_convs``: how many convolutions, from the
    input on, stay in float32. Why percentile: on the distilled 48x4+32x3 net, MinMax ranges (stretched by a few
    extreme pixels) left too few levels for the rest, and int8 read digits on 14% of blank pages (float: 2%) and
    lost 0.016 mIoU on 2x upscaled images; percentile ranges brought both back to float's (docs/speed.md). Why 1024
    images and the 99.9999th percentile: chosen on development data (robustness seed 100, 100 images per category) over
    128 or 2048 images and the 99.99th to 99.99999th percentiles, the only setting within 0.001 of float on every
    category (docs/speed.md)."""
    require_onnx_package("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: use one of {sorted(methods)}")

    # Streamed: ONNX Runtime's histogram calibrators keep every activation of what one ``collect_data`` call reads
    # (about 17 MB per 64x84 image), so the reader hands out one batch per call ("CalibStridedMinMax", which
    # despite its name strides any calibrator) and the histograms merge between calls: memory stays at one batch's
    # whatever the image count.
    starts = list(range(0, len(calibration), batch))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.set_range(0, len(starts))

        def __len__(self) -> int:
            return len(starts)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.todo = iter(starts[start_index:end_index])

        def get_next(self):
            start = next(self.todo, None)
            if start is None:
                return None
            x = calibration[start : start + batch].astype(np.float32)[:, None] / 255.0
            return {INPUT_NAME: x}

    onnx = require_onnx_package("onnx")
    graph = onnx.load_from_string(fp32).graph
    # The first conv (1 input channel, 432 of the shipped net's 95K multiply-adds per pixel) stays float: quantized, it
    # alone cost 0.064 test mIoU over digits (0.9176 vs 0.9819 on 200 test images); without it, int8 loses 0.0007.
    # Graph order is the net's order (a plain chain), so the first ``float_convs`` Conv nodes are the first layers.
    keep_float = [n.name for n in graph.node if n.op_type == "Conv"][:float_convs]
    with tempfile.TemporaryDirectory(prefix="segapp-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        extra = {"CalibStridedMinMax": 1, **({"CalibPercentile": percentile} if method == "percentile" else {})}
        logging.disable(logging.WARNING)  # onnxruntime.quantization advises pre-processing on the root logger
        # ... and prints a progress line per calibration batch to stdout, which is `segapp`'s own output
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=methods[method], nodes_to_exclude=keep_float, extra_options=extra)
        finally:
            logging.disable(logging.NOTSET)
        return dst.read_bytes()


EQUALIZE_PERCENTILE = 99.99  # a channel's range, for equalize_first: this percentile of its calibration activations
EQUALIZE_IMAGES = 256  # of the calibration images, the first these many measure the ranges


def equalize_first(model: nn.Module, calib_images: np.ndarray) -> nn.Module:
    """A copy of ``model`` computing the same function (to float rounding) whose first layer's output channels all
    span the same range on ``calib_images``: BatchNorm 1 scales channel i by s_i and conv 2 reads it through weights
    divided by s_i (ReLU(s x) = s ReLU(x) for s > 0; cross-layer equalization, Nagel et al. 2019, on activations).

    Why: that output is the first activation int8 quantizes, one uint8 range for all of its channels. A fine-tune
    can leave a few channels 8x wider than others, and the rest get too few levels: two GPU fine-tunes of session 20
    lost 0.010-0.014 test mIoU at every range percentile, 0.0017 / -0.0002 once equalized (the shipped stage 7:
    0.0005 -> -0.0010; 1000 test images). Equalizing every layer did worse than the first alone (0.0038 vs 0.0016
    on 300 images).
    """
    model = copy.deepcopy(model).cpu().float().eval()
    layers = list(model.features)
    bn = next(m for m in layers if isinstance(m, nn.BatchNorm2d))
    relu = layers[layers.index(bn) + 1]
    conv2 = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]  # the head, in a one-layer net
    seen = []
    hook = relu.register_forward_hook(lambda _m, _i, o: seen.append(o.transpose(0, 1).flatten(1)[:, ::7].clone()))
    with torch.inference_mode():
        for start in range(0, min(EQUALIZE_IMAGES, len(calib_images)), 32):
            model(to_input(calib_images[start : start + 32]))
    hook.remove()
    acts = torch.cat(seen, 1)  # (channels, sampled pixels): every 7th pixel keeps torch.quantile within its limit
    ranges = torch.quantile(acts, EQUALIZE_PERCENTILE / 100, dim=1)
    # every channel to the widest one's range, at most 100x: a channel silent on these images is not blown up to
    # where any activation it has elsewhere would clip
    s = ranges.max() / ranges.clamp_min(float(ranges.max()) / 100)
    with torch.no_grad():
        bn.weight.mul_(s)
        bn.bias.mul_(s)
        conv2.weight.div_(s[None, :, None, None])
    return model


def calibrate_int8(model: nn.Module, calib_images: np.ndarray, images: np.ndarray, masks: np.ndarray,
                   tolerance: float = INT8_TOLERANCE, metadata: dict | None = None) -> tuple[bytes, dict, list[dict]]:
    """The int8 graph of ``model`` (first layer equalized: :func:`equalize_first`; ``metadata`` into the graph as
    :func:`onnx_bytes` takes it) at the first of :data:`INT8_TRIES` (range percentile, convolutions kept in float)
    whose test mIoU over digits (on ``images``) is within ``tolerance`` of fp32's, else at the one that loses least.

    Why several: the range that suits a net depends on a few extreme activations, and a fine-tuned net can lose
    0.02 at the percentile that suited its parent. Returns (graph, its try, every try with its drop).
    """
    fp32 = onnx_bytes(equalize_first(model, calib_images), metadata=metadata)
    reference = OnnxEngine(fp32)
    tried, best = [], None
    for percentile, float_convs in INT8_TRIES:
        q = quantize_int8(fp32, calib_images, percentile=percentile, float_convs=float_convs)
        r = parity({"fp32": reference, "int8": OnnxEngine(q)}, images, masks, reference="fp32")
        drop = r["fp32"]["miou_digits"] - r["int8"]["miou_digits"]
        tried.append({"percentile": percentile, "float_convs": float_convs, "miou_digits_drop": round(drop, 5)})
        if best is None or drop < best[0]:
            best = (drop, tried[-1], q)
        if drop <= tolerance:
            break
    return best[2], best[1], tried

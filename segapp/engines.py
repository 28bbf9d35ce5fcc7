"""Inference engines for the segapp net: torch with BatchNorm folded, and ONNX (export, ONNX Runtime, int8).

* :func:`fold_batchnorm` makes an inference copy of a :class:`~segapp.model.DilatedNet` whose BatchNorms
  are folded into the convolutions before them (the training model is untouched): 7 fewer passes over
  every feature map, same outputs to float rounding.
* :func:`onnx_bytes` exports the net to ONNX with ``torch.onnx.export(dynamo=True)`` (the torch.export
  based exporter, needs ``onnxscript``; it works offline). Batch, height and width are dynamic: the net
  takes any size. The graph is 8 ``Conv`` + 7 ``Relu`` (the exporter's optimiser folds BatchNorm), input
  ``image`` float32 (N, 1, H, W) in [0, 1] (white ink on black), output ``logits`` float32 (N, 11, H, W);
  class index 0-9 is the digit, 10 background. It runs in plain ONNX Runtime, no segapp code needed.
* :func:`quantize_int8`: ONNX Runtime static quantization (QDQ, int8 weights per channel, uint8
  activations) calibrated on M2NIST-recipe *training* images.
* :class:`TorchEngine` / :class:`OnnxEngine`: a callable ``(N, 1, H, W) float tensor -> float32 logits on
  the CPU``, what :class:`segapp.inference.Segmenter` runs its batches through.
* :func:`parity`: class maps and mean IoU of two engines on the same images (``segapp export`` writes it
  beside the ONNX file).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .classes import CLASS_NAMES, NUM_CLASSES, SegappError

INPUT_NAME, OUTPUT_NAME = "image", "logits"
PROBE_SHAPE = (2, 1, 37, 53)  # odd sizes: a quick check that an ONNX graph computes what the torch net does
PROBE_TOLERANCE = 1e-3  # max |logit difference| on the probe (float32 rounding is ~1e-5)


class EngineError(SegappError, RuntimeError):
    """An inference engine cannot be built or run here (ONNX Runtime missing, export failed, results differ)."""


# -- torch ---------------------------------------------------------------------------------------
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which each ``Conv2d`` directly followed by a ``BatchNorm2d`` (inside any
    ``nn.Sequential``) absorbs it: ``conv'(x) = bn(conv(x))`` with BatchNorm's running statistics. ``model`` itself
    is not changed, so it can go on training."""
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq)
        out, i = [], 0
        while i < len(children):
            a, b = children[i], children[i + 1] if i + 1 < len(children) else None
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                out.append(torch.nn.utils.fusion.fuse_conv_bn_eval(a, b))
                i += 2
            else:
                out.append(a)
                i += 1
        if len(out) != len(children):
            for name in list(seq._modules):
                del seq._modules[name]
            for j, m in enumerate(out):
                seq.add_module(str(j), m)
    return folded.requires_grad_(False)


class TorchEngine:
    """The net in torch for inference: BatchNorm folded, channels_last, bfloat16 autocast only when ``amp``."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, amp: bool = False):
        self.device, self.amp = device, amp
        self.net = fold_batchnorm(model).to(device).to(memory_format=torch.channels_last)
        self.precision = "bf16" if amp else "fp32"

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        if not self.amp:
            return self.net(x).float().cpu()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.net(x).float().cpu()


# -- ONNX export ---------------------------------------------------------------------------------
def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EngineError(f"the ONNX backend needs the {module} package ({e}); "
                          f"install it with: pip install onnx onnxruntime onnxscript") from None


def exporter_name() -> str:
    """The exporter and its versions (read from package metadata: importing onnxscript takes a second)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        extra = f", onnxscript {version('onnxscript')}"
    except PackageNotFoundError:
        extra = ""
    return f"torch.onnx.export(dynamo=True), torch {torch.__version__}{extra}"


def onnx_bytes(model: nn.Module, metadata: dict | None = None, dynamic_size: bool = True) -> bytes:
    """The net as a serialised ONNX model with dynamic batch, height and width (float32, CPU).

    ``metadata`` (strings) goes into the model's ``metadata_props`` beside segapp's own keys (classes, input
    convention, net config). ``dynamic_size=False`` fixes H x W at 64 x 84 (for nets whose code branches on the
    size, such as the benchmark's padded U-Net).
    """
    _require("onnxscript")
    onnx = _require("onnx")
    net = copy.deepcopy(model).cpu().float().eval()
    sample = torch.rand(2, getattr(getattr(model, "config", None), "in_channels", 1), 64, 84)
    dims = {0: torch.export.Dim("batch")}
    if dynamic_size:
        dims.update({2: torch.export.Dim("height"), 3: torch.export.Dim("width")})
    import contextlib
    import warnings

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (sample,), dynamo=True, dynamic_shapes=(dims,), optimize=True,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False)
    except Exception as e:  # the exporter raises its own error types
        raise EngineError(f"ONNX export failed: {' '.join(str(e).split())[:300]}") from e
    proto = program.model_proto
    config = getattr(model, "config", None)
    props = {
        "segapp.input": f"{INPUT_NAME}: float32 (N, 1, H, W), pixel/255, white ink on black background; "
                        "any N, H, W",
        "segapp.output": f"{OUTPUT_NAME}: float32 (N, {NUM_CLASSES}, H, W) class scores; argmax over dim 1 = "
                         "class index (0-9 the digit, 10 background)",
        "segapp.classes": json.dumps(list(CLASS_NAMES)),
        "segapp.exporter": exporter_name(),
        **({"segapp.config": json.dumps(config.to_dict())} if hasattr(config, "to_dict") else {}),
        **(metadata or {}),
    }
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    proto.producer_name = "segapp"
    proto.doc_string = "segapp decoder-free dilated segmentation net (per-pixel digit classes)"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def set_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    """``model`` with these ``metadata_props`` set (replacing keys it has), e.g. the precision of a quantized graph."""
    onnx = _require("onnx")
    proto = onnx.load_from_string(model)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for k, v in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    return proto.SerializeToString()


def ort_session(model: bytes | str | Path, threads: int | None = None, device: torch.device | None = None):
    """An ONNX Runtime session for ``model`` (bytes or path): ``threads`` intra-op threads (default: torch's count),
    sequential execution, full graph optimisation; CUDA when ``device`` is CUDA and onnxruntime-gpu is installed."""
    ort = _require("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    # Threads sleep between runs instead of spinning: segapp predict decodes/encodes files in other threads
    # between model calls, and spinning inference threads would take their cores.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError("the ONNX backend on CUDA needs onnxruntime-gpu; use --backend torch on this machine")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, so, providers=providers)
    except Exception as e:  # onnxruntime's own exception types
        raise EngineError(f"ONNX Runtime cannot load the model: {' '.join(str(e).split())[:300]}") from e


def with_class_outputs(model: bytes) -> bytes:
    """The graph with two more outputs computed from its logits: ``classes`` ((N, H, W) uint8 argmax over the
    classes) and ``confidence`` ((N, H, W) float32 softmax probability of that class, 1 / sum(exp(logits - max))).

    Why: computed by torch after the run, they cost `segapp predict` about a fifth of its model time, as a dozen
    small multithreaded torch calls each waiting for the GIL while file threads run; inside the graph they are
    part of the one ONNX Runtime call (docs/predict.md)."""
    onnx = _require("onnx")
    from onnx import TensorProto, helper

    m = onnx.load_from_string(model)
    g = m.graph
    logits = g.output[0].name
    g.initializer.append(helper.make_tensor("segapp_class_axis", TensorProto.INT64, [1], [1]))
    g.node.extend([
        helper.make_node("ArgMax", [logits], ["segapp_argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["segapp_argmax"], ["classes"], to=TensorProto.UINT8),
        helper.make_node("ReduceMax", [logits, "segapp_class_axis"], ["segapp_top"], keepdims=1),
        helper.make_node("Sub", [logits, "segapp_top"], ["segapp_shifted"]),
        helper.make_node("Exp", ["segapp_shifted"], ["segapp_exp"]),
        helper.make_node("ReduceSum", ["segapp_exp", "segapp_class_axis"], ["segapp_sum"], keepdims=0),
        helper.make_node("Reciprocal", ["segapp_sum"], ["confidence"]),
    ])
    g.output.extend([helper.make_tensor_value_info("classes", TensorProto.UINT8, None),
                     helper.make_tensor_value_info("confidence", TensorProto.FLOAT, None)])
    return m.SerializeToString()


class OnnxEngine:
    """An ONNX model run by ONNX Runtime, called like :class:`TorchEngine`.

    ``class_outputs``: the session also computes the class map and its confidence (:func:`with_class_outputs`),
    which :meth:`with_classes` returns with the logits; the logits are unchanged."""

    name = "onnx"

    def __init__(self, model: bytes | str | Path, threads: int | None = None, device: torch.device | None = None,
                 precision: str = "fp32", class_outputs: bool = False):
        if class_outputs:
            model = with_class_outputs(model if isinstance(model, bytes) else Path(model).read_bytes())
        self.session = ort_session(model, threads, device)
        self.input = self.session.get_inputs()[0].name
        self.precision = precision
        self.class_outputs = class_outputs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input: a})[0])

    def with_classes(self, images: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """(N, H, W) uint8 images -> float32 logits (N, C, H, W), uint8 classes and float32 confidence (N, H, W);
        the input is pixel / 255 in float32, as :meth:`Segmenter.logits` gives torch (the same bits)."""
        if not self.class_outputs:
            raise EngineError("this ONNX engine was built without class outputs (class_outputs=True)")
        x = images.astype(np.float32)[:, None] / np.float32(255.0)
        logits, classes, conf = self.session.run(None, {self.input: x})
        return torch.from_numpy(logits), classes, conf


def state_digest(model: nn.Module) -> str:
    """sha256 over the net's config, tensors and the exporter versions: the name of its cached ONNX file."""
    h = hashlib.sha256(exporter_name().encode())
    config = getattr(model, "config", None)
    h.update(json.dumps(config.to_dict() if hasattr(config, "to_dict") else repr(config), sort_keys=True).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where exported ONNX graphs of loaded weights are kept: ``$SEGAPP_CACHE`` or ``~/.cache/segapp/onnx``."""
    if os.environ.get("SEGAPP_CACHE"):
        return Path(os.environ["SEGAPP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segapp" / "onnx"


def _store(path: Path, data: bytes) -> None:
    """Writes a cache file atomically (temp name, then rename); a read-only home just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".segapp-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def probe_difference(engine: Callable[[torch.Tensor], torch.Tensor], model: nn.Module) -> float:
    """Max |logit difference| between ``engine`` and the torch net (float32) on a small random input."""
    x = torch.rand(PROBE_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = copy.deepcopy(model).cpu().float().eval()(x)
    got = engine(x)
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max())


def onnx_engine_for(model: nn.Module, device: torch.device | None = None, threads: int | None = None,
                    use_cache: bool = True) -> OnnxEngine:
    """An :class:`OnnxEngine` for a loaded torch net: exported once per set of weights and cached on disk
    (see :func:`cache_dir`; export takes a few seconds, loading the cached file milliseconds). The graph is
    checked against torch on a small input before use; a cached file that fails the check is exported anew."""
    path = cache_dir() / f"{state_digest(model)[:32]}.onnx" if use_cache else None
    if path is not None and path.is_file():
        try:
            engine = OnnxEngine(path.read_bytes(), threads, device, class_outputs=True)
            if probe_difference(engine, model) <= PROBE_TOLERANCE:
                return engine
        except (OSError, EngineError):
            pass
    data = onnx_bytes(model)
    engine = OnnxEngine(data, threads, device, class_outputs=True)
    diff = probe_difference(engine, model)
    if not diff <= PROBE_TOLERANCE:
        raise EngineError(f"the exported ONNX graph differs from the torch net (max |logit difference| {diff:.3g})")
    if path is not None:
        _store(path, data)
    return engine


# -- int8 ----------------------------------------------------------------------------------------
# training-like images the int8 ranges are calibrated on (as `segapp export`); calibration streams them a batch at a
# time (1.6 GB peak and about 30 s for 1024 images on 2 cores; 128 images all at once took 2.8 GB)
INT8_CALIBRATION = 1024
INT8_CALIBRATION_WILD = 0.65  # their share of real-world-like images, as `segapp train` draws them by default
INT8_CALIBRATION_DATA = f"m2nist-recipe:train + {INT8_CALIBRATION_WILD:g} wild (segapp.synth, MNIST training digits)"
INT8_PERCENTILE = 99.9999  # each activation range ends at this percentile of the calibration activations
INT8_AGREEMENT = 0.995  # share of class-map pixels int8 must share with torch on the probe images to be used


def calibration_images(n: int = INT8_CALIBRATION, wild: float = INT8_CALIBRATION_WILD) -> np.ndarray:
    """(n, 64, 84) uint8 images drawn as training draws them: M2NIST-recipe canvases and, a share ``wild`` of
    them, real-world-like ones (thick pens, photographs, blank paper's texture after normalisation), all from
    MNIST *training* digits. Why not the recipe alone: activation ranges calibrated on clean canvases clip on a
    photo's or a blank page's background, and int8 then reads digits on blank paper (14% of blank pages against
    2% in float, on the distilled net; docs/speed.md)."""
    from .data import WildM2NIST

    data = WildM2NIST(n, seed=12345, wild=wild)
    return np.stack([(data[i][0][0].numpy() * 255).round().astype(np.uint8) for i in range(n)])


INT8_FILE = "model.int8.onnx"  # beside a weights folder's model.safetensors: its int8 graph, made by `segapp export`


def shipped_int8(model: nn.Module, folder: Path | None) -> bytes | None:
    """The int8 graph a weights folder comes with (``folder/model.int8.onnx``, written by ``segapp export --format
    onnx --int8 --out FOLDER/model.int8.onnx``), if it was made from exactly these weights (the weights digest in
    its metadata), else None: a file left over from other weights is never used."""
    path = Path(folder) / INT8_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    onnx = _require("onnx")
    try:
        data = path.read_bytes()
        meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    except Exception:  # unreadable or not an ONNX model: as if absent
        return None
    ok = meta.get("segapp.weights_digest") == state_digest(model) and meta.get("segapp.precision") == "int8"
    return data if ok else None


def int8_engine_for(model: nn.Module, device: torch.device | None = None, threads: int | None = None,
                    use_cache: bool = True, data: bytes | None = None) -> OnnxEngine:
    """An int8 :class:`OnnxEngine` for a loaded torch net (``--backend int8``): exported, quantized as
    ``segapp export --int8`` does (:func:`quantize_int8`, calibrated on :func:`calibration_images`) and cached
    beside the fp32 graphs, so only the first use pays the ~30 s it takes. int8 cannot match float logits to
    1e-3, so the check before use compares class maps on recipe validation images: at least
    :data:`INT8_AGREEMENT` of their pixels must match torch's, else :class:`EngineError`. ``data``: a graph to
    use instead (:func:`shipped_int8`), checked the same way."""
    from .data import make_split

    probe = make_split("val", n=16)[0]
    path = cache_dir() / f"{state_digest(model)[:32]}.int8v4.onnx"  # v4: 1024 wild images, streamed, percentile 99.9999
    given = data is not None
    if not given:
        data = path.read_bytes() if use_cache and path.is_file() else None
    fresh = data is None
    if fresh:
        data = quantize_int8(onnx_bytes(model), calibration_images())
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
        _store(path, data)
    return engine


def quantize_int8(fp32: bytes, calibration: np.ndarray, batch: int = 50, method: str = "percentile",
                  float_first: bool = True, percentile: float = INT8_PERCENTILE) -> bytes:
    """ONNX Runtime static quantization of an exported net, QDQ format: weights int8 per output channel,
    activations uint8 with ranges calibrated on ``calibration`` ((N, H, W) uint8 images, e.g.
    :func:`calibration_images`). ``method``: ``percentile`` (each range ends at the :data:`INT8_PERCENTILE`
    percentile of its activations), ``minmax`` or ``entropy``; ``float_first`` keeps the first convolution in
    float32. Why percentile: on the distilled 48x4+32x3 net, MinMax ranges (stretched by a few extreme pixels)
    left too few levels for the rest, and int8 read digits on 14% of blank pages (float: 2%) and lost 0.016
    mIoU on 2x upscaled images; percentile ranges brought both back to float's (docs/speed.md). Why 1024 images
    and the 99.9999th percentile: chosen on development data (robustness seed 100, 100 images per category) over
    128 or 2048 images and the 99.99th to 99.99999th percentiles, the only setting within 0.001 of float on every
    category (docs/speed.md)."""
    _require("onnxruntime")
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

    onnx = _require("onnx")
    graph = onnx.load_from_string(fp32).graph
    inputs = {i.name for i in graph.input}
    # The first conv (1 input channel, 432 of the net's 126K multiply-adds per pixel) stays float: quantized, it
    # alone cost 0.064 test mIoU over digits (0.9176 vs 0.9819 on 200 test images); without it, int8 loses 0.0007.
    keep_float = [n.name for n in graph.node if n.op_type == "Conv" and inputs & set(n.input)] if float_first else []
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


# -- parity --------------------------------------------------------------------------------------
def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, H, W) float32 in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]


def parity(engines: dict[str, Callable[[torch.Tensor], torch.Tensor]], images: np.ndarray, masks: np.ndarray,
           reference: str, batch: int = 100) -> dict:
    """Runs every engine on the same images; returns, per engine, mIoU (digits and 11 classes) against
    ``masks`` and, against the ``reference`` engine, the share of identical class-map pixels and the largest
    |logit difference|."""
    from .metrics import ConfusionMatrix

    cms = {k: ConfusionMatrix() for k in engines}
    same = dict.fromkeys(engines, 0)
    diff = dict.fromkeys(engines, 0.0)
    for s in range(0, len(images), batch):
        x = to_input(images[s : s + batch])
        y = torch.from_numpy(masks[s : s + batch]).long()
        logits = {k: e(x) for k, e in engines.items()}
        ref = logits[reference].argmax(1)
        for k, lg in logits.items():
            pred = lg.argmax(1)
            cms[k].update(pred, y)
            same[k] += int((pred == ref).sum())
            diff[k] = max(diff[k], float((lg - logits[reference]).abs().max()))
    total = int(masks.size)
    out = {}
    for k in engines:
        m = cms[k].compute()
        out[k] = {"miou_digits": m["miou_digits"], "miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"],
                  "identical_pixels": same[k] / total, "max_abs_logit_diff": diff[k]}
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

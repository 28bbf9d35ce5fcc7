"""Inference engines for the segapp net: torch with BatchNorm folded, and ONNX Runtime (fp32, int8).

* :func:`fold_batchnorm` makes an inference copy of a :class:`~segapp.model.DilatedNet` whose BatchNorms
  are folded into the convolutions before them (the training model is untouched): 7 fewer passes over
  every feature map, same outputs to float rounding.
* the ONNX graph they run (export, metadata, class outputs inside the graph): :mod:`segapp.onnx_export`.
* int8 (static quantization of that graph, the int8 graph a weights folder ships): :mod:`segapp.int8`.
* :class:`TorchEngine` / :class:`OnnxEngine`: a callable ``(N, 1, H, W) float tensor -> float32 logits on
  the CPU``, what :class:`segapp.inference.Segmenter` runs its batches through.
* :func:`parity`: class maps and mean IoU of two engines on the same images (``segapp export`` writes it
  beside the ONNX file).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .onnx_export import EngineError, exporter_name, onnx_bytes, require_onnx_package, with_class_outputs
from .safeio import write_atomic

PROBE_SHAPE = (2, 1, 37, 53)  # odd sizes: a quick check that an ONNX graph computes what the torch net does
PROBE_TOLERANCE = 1e-3  # max |logit difference| on the probe (float32 rounding is ~1e-5)


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


# -- ONNX Runtime --------------------------------------------------------------------------------
def ort_session(model: bytes | str | Path, threads: int | None = None, device: torch.device | None = None):
    """An ONNX Runtime session for ``model`` (bytes or path): ``threads`` intra-op threads (default: torch's count),
    sequential execution, full graph optimisation; CUDA when ``device`` is CUDA and onnxruntime-gpu is installed."""
    ort = require_onnx_package("onnxruntime")
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
        logits, classes, conf = self.session.run(None, {self.input: to_input(images).numpy()})
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


def store_cache_file(path: Path, data: bytes) -> None:
    """Writes a cache file atomically (temp name, then rename), best effort: a read-only home just means no cache,
    so an OSError is swallowed rather than failing the run that only wanted a faster second start."""
    try:
        write_atomic(path, data)
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
        store_cache_file(path, data)
    return engine


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


class CropRunner:
    """Runs a small crop classifier (the letters reader, :mod:`segapp.words`) called once per image on a few crops:
    torch for the first :attr:`WARM` calls, then ONNX Runtime on a graph exported once. At four 28x28 crops a call
    torch's per-operator overhead is the cost (1.7 ms a call here, against 0.5 ms in ONNX Runtime on one thread);
    the TorchScript exporter takes 0.5-0.7 s (the net's dynamo exporter 5.6 s), which a one-image ``segapp predict``
    never pays. If the export fails the model stays in torch."""

    WARM = 16

    def __init__(self, model: nn.Module):
        self.model, self.calls, self.session = model.eval(), 0, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.WARM:
            self.session = self._export()
        if self.session is not None:
            return torch.from_numpy(self.session.run(None, {"crops": x.numpy()})[0])
        return self.model(x)

    def _export(self):
        import io
        import warnings

        buf = io.BytesIO()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(self.model, (torch.zeros(2, 1, 28, 28),), buf, dynamo=False, opset_version=17,
                                  input_names=["crops"], output_names=["logits"],
                                  dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}})
            return ort_session(buf.getvalue(), threads=1)
        except Exception:  # any exporter or runtime failure: torch stays right, only slower
            return None

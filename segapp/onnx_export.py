"""The net as an ONNX graph: export, metadata and the graph edits the engines run, plus the error they all raise.

* :func:`onnx_bytes` exports the net to ONNX with ``torch.onnx.export(dynamo=True)`` (the torch.export
  based exporter, needs ``onnxscript``; it works offline). Batch, height and width are dynamic: the net
  takes any size. The graph is 8 ``Conv`` + 7 ``Relu`` (the exporter's optimiser folds BatchNorm), input
  ``image`` float32 (N, 1, H, W) in [0, 1] (white ink on black), output ``logits`` float32 (N, 11, H, W);
  class index 0-9 is the digit, 10 background. It runs in plain ONNX Runtime, no segapp code needed.
* :func:`set_metadata` and :func:`with_class_outputs` edit a serialised graph (the precision of a quantized one;
  the class map and its confidence computed inside the graph).

Kept apart from the engines that run the graph (:mod:`segapp.engines`) and from int8 quantization
(:mod:`segapp.int8`), which both build on it: producing a graph needs only the ``onnx`` and ``onnxscript``
packages, not ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from types import ModuleType

import torch
from torch import nn

from .classes import CLASS_NAMES, NUM_CLASSES, SegappError

INPUT_NAME, OUTPUT_NAME = "image", "logits"


class EngineError(SegappError, RuntimeError):
    """An inference engine cannot be built or run here (ONNX Runtime missing, export failed, results differ)."""


def require_onnx_package(module: str) -> ModuleType:
    """Imports ``module`` (onnx, onnxruntime, onnxscript) for the ONNX and int8 backends.

    Those packages are optional for torch-only use, so a missing one is an :class:`EngineError` that names the
    pip command rather than an ImportError traceback.
    """
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
    require_onnx_package("onnxscript")
    onnx = require_onnx_package("onnx")
    net = copy.deepcopy(model).cpu().float().eval()
    sample = torch.rand(2, getattr(getattr(model, "config", None), "in_channels", 1), 64, 84)
    dims = {0: torch.export.Dim("batch")}
    if dynamic_size:
        dims.update({2: torch.export.Dim("height"), 3: torch.export.Dim("width")})
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
    onnx = require_onnx_package("onnx")
    proto = onnx.load_from_string(model)
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for k, v in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    return proto.SerializeToString()


def with_class_outputs(model: bytes) -> bytes:
    """The graph with two more outputs computed from its logits: ``classes`` ((N, H, W) uint8 argmax over the
    classes) and ``confidence`` ((N, H, W) float32 softmax probability of that class, 1 / sum(exp(logits - max))).

    Why: computed by torch after the run, they cost `segapp predict` about a fifth of its model time, as a dozen
    small multithreaded torch calls each waiting for the GIL while file threads run; inside the graph they are
    part of the one ONNX Runtime call (docs/predict.md)."""
    onnx = require_onnx_package("onnx")
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

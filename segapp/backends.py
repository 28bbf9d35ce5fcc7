"""Which engine runs the net for a :class:`~segapp.inference.Segmenter`: the ``--backend`` choice, and the measured
rule behind ``auto`` (docs/speed.md)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .engines import EngineError, TorchEngine, onnx_engine_for
from .int8 import int8_engine_for, shipped_int8

BACKENDS = ("auto", "torch", "onnx", "int8")  # what runs the net: see make_engine


def make_engine(model: torch.nn.Module, backend: str, device: torch.device, amp: bool, folder: Path | None = None,
                quiet: bool = False):
    """The callable that runs the net for a :class:`Segmenter` (see :mod:`segapp.engines`).

    * ``torch``: an inference copy of ``model`` with BatchNorm folded into the convs, channels_last, bfloat16
      autocast when ``amp`` (which :func:`segapp.runtime.amp_enabled` allows only where bf16 is native);
    * ``onnx``: the net exported to ONNX (cached per weights) and run by ONNX Runtime with torch's thread
      count; checked against torch on a small input before use;
    * ``int8``: the weights folder's own int8 graph (``folder/model.int8.onnx`` made from these very weights by
      ``segapp export --int8``), else that ONNX graph quantized by ONNX Runtime on first use (static QDQ,
      calibrated on training-like images; cached per weights): the fastest engine on every CPU measured
      (docs/speed.md), within 0.0013 mIoU of float on the test split and every robustness category for the
      shipped weights, but not pixel-identical (99.97%);
    * ``auto``: the fastest correct engine by a measured rule (docs/speed.md): on a CPU, int8 when the weights
      folder comes with its checked int8 graph (the shipped weights do: 2.2x torch bf16, 2.5x ONNX Runtime fp32
      here); otherwise torch on CUDA and wherever bf16 is native and on (``amp``: on an AVX-512 BF16 CPU, torch
      bf16 ran the net 1.3x faster than ONNX Runtime fp32, with 99.99% of class-map pixels unchanged); ONNX
      Runtime fp32 on other CPUs (on AVX2, 1.3x torch with BatchNorm folded, 11x emulated bf16); torch when ONNX
      Runtime is missing or its graph fails the check. A rule, not a start-up timing: the same engine, so the
      same outputs, on every run; weights without an int8 graph never wait for a calibration.

    ``folder``: where the weights came from (their int8 graph is looked for there); ``quiet``: a graph there made
    from other weights is passed over without a warning.
    """
    def folder_graph(instead: str) -> bytes | None:
        try:
            return shipped_int8(model, folder)
        except EngineError as e:
            if not quiet:
                warnings.warn(f"segapp: {e}; {instead}", stacklevel=3)
            return None

    if backend == "auto" and device.type == "cpu":
        data = folder_graph("using a float engine")
        if data is not None:
            try:
                return int8_engine_for(model, device, data=data)
            except EngineError as e:  # its class maps fail the probe check
                warnings.warn(f"segapp: {e}; using a float engine", stacklevel=2)
    if backend == "torch" or (backend == "auto" and (device.type != "cpu" or amp)):
        return TorchEngine(model, device, amp)
    if backend == "onnx":
        return onnx_engine_for(model, device)
    if backend == "int8":
        return int8_engine_for(model, device, data=folder_graph("quantizing these weights instead"))
    try:
        return onnx_engine_for(model, device)
    except EngineError as e:
        warnings.warn(f"segapp: ONNX Runtime backend unavailable ({e}); using torch", stacklevel=2)
        return TorchEngine(model, device, amp)

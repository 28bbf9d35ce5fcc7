"""Where and how tensors run: device choice, the bfloat16 policy and thread count, in one place.

bfloat16 autocast pays off on GPUs and on CPUs with native BF16 (AVX-512 BF16 / AMX); on an
AVX2-only CPU it is emulated and about 5x slower than float32, so ``auto`` never assumes it.
"""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else as torch spells it."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """True on GPUs and on CPUs whose oneDNN reports native bfloat16."""
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_enabled(policy: str | bool, device: torch.device) -> bool:
    """Resolves an ``auto|on|off`` policy (or a bool from an old checkpoint) for ``device``."""
    if isinstance(policy, bool):
        return policy
    if policy not in ("auto", "on", "off"):
        raise ValueError(f"amp policy {policy!r}: use auto, on or off")
    return bf16_is_fast(device) if policy == "auto" else policy == "on"


def autocast(device: torch.device, enabled: bool = True):
    """bfloat16 autocast on ``device`` when ``enabled``; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)

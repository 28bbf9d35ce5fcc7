"""Where and how tensors run: device choice and checks, the bfloat16 policy, threads and the machine, in one place;
and the progress bars that show it.

bfloat16 autocast pays off on GPUs and on CPUs with native BF16 (AVX-512 BF16 / AMX); on an
AVX2-only CPU it is emulated and much slower than float32 (docs/speed.md), so ``auto`` never assumes it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

import torch

from .classes import SegappError

FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 24  # a terminal's size when it reports none


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar (``kwargs`` as tqdm takes them; on stderr unless ``file`` says otherwise) that also draws on a
    terminal that reports no size. A pseudo-terminal made without one (``script -qc "segapp evaluate" /dev/null``
    from a job or a pipe) is 0 x 0, and tqdm draws nothing in 0 rows, so there it gets a fixed 80 x 24."""
    from tqdm import tqdm

    out = kwargs.setdefault("file", sys.stderr)
    try:
        columns, rows = os.get_terminal_size(out.fileno())
    except (AttributeError, OSError, ValueError):  # not a terminal (or no file descriptor): tqdm decides
        columns = rows = None
    if columns == 0 or rows == 0:
        kwargs["dynamic_ncols"] = False  # it would read 0 x 0 again at every refresh
        kwargs.setdefault("ncols", columns or FALLBACK_COLUMNS)
        kwargs.setdefault("nrows", rows or FALLBACK_ROWS)
    return tqdm(iterable, **kwargs)


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


def training_memory_format(widths, amp: bool, device: torch.device) -> torch.memory_format:
    """The memory format to train a net of these ``widths`` in: channels_last (the fast one) unless that would be
    wrong. On CPU, torch 2.14's oneDNN computes the bfloat16 weight gradient of a channels_last convolution with
    dilation >= 4 as NaN (or crashes) when its channel count is not a multiple of 16 (24, 40, 44 and 56 fail; 16,
    32, 48 and 64 are right; forward passes are right at every width). Such nets train in contiguous (NCHW) layout,
    whose gradients are right (``tests/test_distill.py`` trains a 24-wide net in bf16 to finite weights)."""
    if amp and device.type == "cpu" and any(int(w) % 16 for w in widths):
        return torch.contiguous_format
    return torch.channels_last


def check_device(name: str | None) -> None:
    """Refuses a ``--device`` this machine cannot run on, before any work starts or any file is written."""
    if name is None or name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise SegappError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise SegappError(f"--device {name}: {why}; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SegappError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return
    if device.type == "mps" and torch.backends.mps.is_available():
        return
    raise SegappError(f"--device {name}: segapp runs on cpu or cuda (or mps where present); use auto, cpu or cuda")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"

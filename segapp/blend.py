"""Weight-space blending after fine-tuning: learn a new style without forgetting the old ones.

Fine-tuning the shipped net on a small folder of a new writing style moves every weight towards that
style, and the net loses some of what it knew: measured on an "outline pen" style
(``python -m benchmarks.finetune_style``), three gentle epochs lift the style's held-out mIoU over
digits from 0.18 to 0.76 but cost 0.009 on the M2NIST test split, even with 75% of every epoch drawn
from the original recipe. Averaging the parent's and the fine-tuned weights,

    weights = (1 - B) * parent + B * fine-tuned,

keeps most of the gain for a fraction of the loss, because both nets sit in one basin of the loss
(they share an initialisation): at B = 0.5 the style reads 0.48 and M2NIST loses 0.003. This is
WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). BatchNorm's running
statistics are blended with the rest; the blended net is validated as it is, so that costs nothing
hidden.

``--blend auto`` (the default when fine-tuning on a folder dataset) walks B down from 1 in steps of
0.1 and keeps the first B whose M2NIST-recipe validation mIoU over digits is within
``--forget-tolerance`` of the parent's: the most of the new style that the old ones allow. The
validation split is the recipe's own val split (MNIST's held-out digits), never the test split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from .classes import SegappError
from .distill import grow
from .evaluate import evaluate
from .model import DilatedNet, load_pretrained, save_pretrained
from .safeio import write_atomic

STEPS = tuple(round(1 - k / 10, 1) for k in range(11))  # 1.0, 0.9, ..., 0.0 (0 = the parent unchanged)
TUNED = "tuned.safetensors"  # the fine-tuned best epoch before blending, kept so that blending can be redone


def blend_state(parent: dict, tuned: dict, b: float) -> dict:
    """(1 - b) * parent + b * tuned for every floating-point tensor; integer buffers (BatchNorm's batch counter)
    are taken from ``tuned``. Both state dicts must come from nets of the same widths."""
    return {k: torch.lerp(parent[k].float(), v.float(), b).to(v.dtype) if v.is_floating_point() else v
            for k, v in tuned.items()}


def _digits(model: DilatedNet, data: tuple[np.ndarray, np.ndarray], device, amp: bool) -> float:
    return evaluate(model, data[0], data[1], 128, device, amp)[0]["miou_digits"]


def choose(parent: DilatedNet, tuned: DilatedNet, keep: tuple[np.ndarray, np.ndarray],
           learn: tuple[np.ndarray, np.ndarray], tolerance: float, device, amp: bool,
           log=None) -> tuple[float, list[dict]]:
    """The largest B in :data:`STEPS` whose mIoU over digits on ``keep`` (images and masks of what the parent
    knew) is at most ``tolerance`` below the parent's. Returns B and one row per B tried (with the mIoU on
    ``learn``, the new data's validation windows, for the record)."""
    base = {"keep": _digits(parent, keep, device, amp), "learn": _digits(parent, learn, device, amp)}
    p_state, t_state = parent.state_dict(), tuned.state_dict()
    probe = DilatedNet(parent.config).to(device).to(memory_format=torch.channels_last)
    rows = []
    for b in STEPS:
        probe.load_state_dict(blend_state(p_state, t_state, b))
        row = {"blend": b, "keep_miou_digits": _digits(probe, keep, device, amp),
               "learn_miou_digits": _digits(probe, learn, device, amp)}
        row["forgotten"] = base["keep"] - row["keep_miou_digits"]
        rows.append(row)
        if log:
            log(f"blend {b:.1f}: M2NIST val mIoU digits {row['keep_miou_digits']:.4f} (parent {base['keep']:.4f}), "
                f"new data val {row['learn_miou_digits']:.4f} (parent {base['learn']:.4f})")
        if row["forgotten"] <= tolerance:
            return b, [{"blend": "parent", "keep_miou_digits": base["keep"], "learn_miou_digits": base["learn"]},
                       *rows]
    raise AssertionError("unreachable: blend 0 is the parent itself")


def blend_run(out: Path, parent_path: str, blend: str | float, tolerance: float, keep, learn, device,
              amp: bool) -> dict:
    """Replaces ``out``'s best weights by their blend with the parent's (``blend``: a number, or "auto" to pick it
    with :func:`choose`). The fine-tuned weights stay in ``out/tuned.safetensors`` and every blend starts from
    them, so a run killed here and resumed blends once, not twice. Returns what goes into metrics.json."""
    tuned_path = out / TUNED
    run_config = json.loads((out / "config.json").read_text())
    if "blend" not in run_config:  # the best epoch as trained: keep it (a tuned file of an earlier run is stale)
        data = (out / "model.safetensors").read_bytes()
        write_atomic(tuned_path, lambda p: Path(p).write_bytes(data), fsync=True)
    elif not tuned_path.exists():
        raise SegappError(f"{out / 'model.safetensors'} is blended already and {tuned_path} (the fine-tuned weights "
                          "every blend starts from) is missing: blending again would blend twice; put it back, or "
                          "train again")
    parent = load_pretrained(parent_path)
    widths = tuple(run_config["widths"])
    if tuple(parent.config.widths) != widths:  # a run that grew its parent starts from (and blends with) it grown
        parent = grow(parent, widths)
    parent = parent.to(device).to(memory_format=torch.channels_last)
    tuned = DilatedNet(parent.config).to(device).to(memory_format=torch.channels_last)
    tuned.load_state_dict(load_file(tuned_path, device=str(device)))
    log = (lambda s: print(s, file=sys.stderr))  # noqa: E731  (progress lines, as the epochs print theirs)
    if blend == "auto":
        b, rows = choose(parent, tuned, keep, learn, tolerance, device, amp, log)
    else:
        b, rows = float(blend), []
    tuned.load_state_dict(blend_state(parent.state_dict(), tuned.state_dict(), b))
    meta = {k: v for k, v in run_config.items() if k not in parent.config.to_dict()}
    save_pretrained(tuned, out, {**meta, "blend": b})  # keeps the best epoch's record (epoch, val mIoU)
    how = f"within {tolerance} of the parent's M2NIST val mIoU" if blend == "auto" else "as asked"
    log(f"final weights: {1 - b:g} x parent + {b:g} x fine-tuned ({how}); fine-tuned alone: {tuned_path}")
    return {"blend": b, "blend_mode": str(blend), "forget_tolerance": tolerance, "blend_table": rows}

"""The decoder-free segmentation net: dilated 3x3 convs at full resolution, then a 1x1 head.

No pooling, no stride, no upsampling: every layer keeps the input's HxW (``padding =
dilation * (k - 1) / 2``), so any input size works and outputs align pixel-for-pixel with inputs.
The receptive field grows through the dilations 1-2-4-8-4-2-1 to 45x45 pixels, enough to see a
whole 28x28 digit from any of its pixels.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .classes import NUM_CLASSES

ARCHITECTURE = "segapp.DilatedNet"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


class WeightsError(ValueError):
    """A weights file is missing, corrupt, unsafe or for another architecture."""


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild the exact net; saved as ``config.json`` beside the weights."""

    widths: tuple[int, ...] = (48, 48, 48, 48, 48, 48, 48)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1)
    kernel_sizes: tuple[int, ...] = (3, 3, 3, 3, 3, 3, 3)
    in_channels: int = 1
    num_classes: int = NUM_CLASSES

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        if not (len(self.widths) == len(self.dilations) == len(self.kernel_sizes) > 0):
            raise ValueError(f"widths, dilations and kernel_sizes need one entry per layer, got {self}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd to keep the resolution, got {self.kernel_sizes}")

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> NetConfig:
        if d.get("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise WeightsError(
                f"{source}: architecture {d.get('architecture')!r} is not {ARCHITECTURE}; "
                "baseline models from `segapp bench` cannot be loaded as the segapp model"
            )
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{source}: invalid model config ({e})") from None


class DilatedNet(nn.Module):
    """Stack of (conv k x k, dilation d) + BatchNorm + ReLU at full resolution, then a 1x1 head."""

    def __init__(self, config: NetConfig = NetConfig()):
        super().__init__()
        self.config = config
        layers, c_in = [], config.in_channels
        for w, d, k in zip(config.widths, config.dilations, config.kernel_sizes):
            layers += [
                nn.Conv2d(c_in, w, k, padding=d * (k - 1) // 2, dilation=d, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) float in [0, 1] -> logits (N, num_classes, H, W), same H and W."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected input of shape (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}; "
                "convert images to single-channel grayscale first (see segapp.images.prepare)"
            )
        return self.head(self.features(x))

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class map (N, H, W) int64 and its softmax confidence (N, H, W), in eval mode."""
        was_training = self.training
        self.eval()
        probs = self(x).float().softmax(1)
        self.train(was_training)
        conf, classes = probs.max(1)
        return classes, conf

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def receptive_field(self) -> int:
        """Side of the square of input pixels that can influence one output pixel."""
        return 1 + sum((k - 1) * d for k, d in zip(self.config.kernel_sizes, self.config.dilations))

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel (every layer runs at full resolution)."""
        c = self.config
        chans = (c.in_channels, *c.widths)
        convs = sum(k * k * a * b for k, a, b in zip(c.kernel_sizes, chans[:-1], chans[1:]))
        return convs + c.widths[-1] * c.num_classes


def atomic_write(path: Path, write) -> None:
    """Calls ``write(tmp_path)`` then renames over ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pretrained(model: DilatedNet, folder: Path, extra: dict | None = None) -> None:
    """Writes ``config.json`` + ``model.safetensors`` (plus optional metadata) atomically."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, p))
    cfg = {**model.config.to_dict(), **(extra or {})}
    atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(cfg, indent=2) + "\n"))


def build_from_state(config: NetConfig, state: dict, source: str) -> DilatedNet:
    """Builds the net for ``config`` and loads ``state``, turning mismatches into a clear error."""
    model = DilatedNet(config)
    expected = model.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        what = ", ".join((bad + extra)[:3])
        raise WeightsError(
            f"{source}: weights do not fit {ARCHITECTURE} with {config} (mismatched: {what}); "
            "was it saved for another architecture or class count?"
        )
    model.load_state_dict(state)
    return model.eval()


def load_pretrained(path: Path | str | None = None) -> DilatedNet:
    """Loads a model from a weights folder, a ``model.safetensors`` file, or a training checkpoint.

    Nothing is unpickled beyond plain tensors and containers (safetensors, or ``torch.load`` with
    ``weights_only=True``), so a hostile file cannot run code.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(f"{path}: weights not found; pass --weights PATH or train one with `segapp train`")
    if path.suffix == ".safetensors":
        cfg_path = path.with_name(CONFIG_NAME)
        try:
            cfg = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise WeightsError(f"{cfg_path}: missing; keep config.json beside {path.name}") from None
        except json.JSONDecodeError as e:
            raise WeightsError(f"{cfg_path}: not valid JSON ({e})") from None
        try:
            state = load_file(path)
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise WeightsError(f"{path}: corrupt or truncated safetensors file ({e})") from None
        return build_from_state(NetConfig.from_dict(cfg, str(cfg_path)), state, str(path))
    ckpt = load_checkpoint(path)
    return build_from_state(NetConfig.from_dict(ckpt["config"], str(path)), ckpt["model"], str(path))


def load_checkpoint(path: Path) -> dict:
    """Reads a training checkpoint with ``weights_only=True``; errors name the file and the fix."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if "Unsupported global" in str(e) or "weights_only" in str(e):
            reason = "it contains pickled code or objects, which segapp refuses to load"
        raise WeightsError(f"{path}: not a loadable segapp checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise WeightsError(f"{path}: not a segapp checkpoint (no 'model' and 'config' entries)")
    return ckpt

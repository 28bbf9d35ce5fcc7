"""The decoder-free segmentation net: dilated 3x3 convs at full resolution, then a 1x1 head.

No pooling, no stride, no upsampling: every layer keeps the input's HxW (``padding =
dilation * (k - 1) / 2``), so any input size works and outputs align pixel-for-pixel with inputs.
The receptive field grows through the dilations 1-2-4-8-4-2-1 to 45x45 pixels, enough to see a
whole 28x28 digit from any of its pixels.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .classes import NUM_CLASSES, SegappError
from .paths import WEIGHTS_DIR
from .safeio import HASH_HEX, file_sha256, write_atomic

ARCHITECTURE = "segapp.DilatedNet"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
DEFAULT_WEIGHTS = WEIGHTS_DIR  # the shipped weights (segapp/paths.py: found in a checkout and in a wheel)
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few hundred bytes
# Bounds of a config read from a file: far beyond any sensible net, small enough that building one is cheap.
MAX_LAYERS, MAX_WIDTH, MAX_DILATION, MAX_KERNEL = 32, 1024, 256, 31


class WeightsError(SegappError, ValueError):
    """A weights file is missing, corrupt, unsafe or for another architecture."""


def _int_list(name: str, values, lo: int = 1, hi: int | None = None) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list of integers, got {values!r}"[:200])
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
            raise ValueError(f"{name} must be whole numbers, got {v!r}"[:200])
        if v < lo or hi is not None and v > hi:
            raise ValueError(f"{name} must lie in {lo}..{hi if hi is not None else ''}, got {v!r}"[:200])
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild the exact net; saved as ``config.json`` beside the weights."""

    widths: tuple[int, ...] = (48, 48, 48, 48, 48, 48, 48)
    dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1)
    kernel_sizes: tuple[int, ...] = (3, 3, 3, 3, 3, 3, 3)
    in_channels: int = 1
    num_classes: int = NUM_CLASSES

    def __post_init__(self):
        for name in ("widths", "dilations", "kernel_sizes"):
            object.__setattr__(self, name, _int_list(name, getattr(self, name)))
        object.__setattr__(self, "in_channels", _int_list("in_channels", [self.in_channels])[0])
        object.__setattr__(self, "num_classes", _int_list("num_classes", [self.num_classes])[0])
        if not (len(self.widths) == len(self.dilations) == len(self.kernel_sizes) > 0):
            raise ValueError(f"widths, dilations and kernel_sizes need one entry per layer, got {self}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd to keep the resolution, got {self.kernel_sizes}")

    def check_bounds(self) -> None:
        """Refuses sizes no segapp net has (a config read from a file): building one would exhaust memory."""
        for name, hi in (("widths", MAX_WIDTH), ("dilations", MAX_DILATION), ("kernel_sizes", MAX_KERNEL)):
            _int_list(name, getattr(self, name), 1, hi)
        if len(self.widths) > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers, got {len(self.widths)}")

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> NetConfig:
        if not isinstance(d, dict):
            raise WeightsError(f"{source}: the model config must be a JSON object, got {type(d).__name__}")
        if d.get("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise WeightsError(
                f"{source}: architecture {d.get('architecture')!r} is not {ARCHITECTURE}; "
                "baseline models from `python -m benchmarks.bench` cannot be loaded as the segapp model"
            )
        names = {f.name for f in fields(cls)}
        try:
            config = cls(**{k: v for k, v in d.items() if k in names})
            config.check_bounds()
        except (TypeError, ValueError, OverflowError) as e:
            raise WeightsError(f"{source}: invalid model config ({e})") from None
        if config.in_channels != 1 or config.num_classes != NUM_CLASSES:
            raise WeightsError(f"{source}: a segapp model takes 1 input channel and gives {NUM_CLASSES} classes, "
                               f"this config says {config.in_channels} and {config.num_classes}; "
                               "was it saved for another architecture or class count?")
        return config


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


def weights_fingerprint(weights: Path | str | None) -> str | None:
    """A fingerprint of the files ``--weights`` loads (config.json + model.safetensors, or the checkpoint): a SHA-256
    over their digests, cut to :data:`~segapp.safeio.HASH_HEX` hex digits (`segapp predict`'s ``weights_sha256``
    column; a model card's parent and teacher). None when they cannot be read (loading them then fails with its own
    message)."""
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if path.is_dir():
        path = path / WEIGHTS_NAME
    parts = [path, path.with_name(CONFIG_NAME)] if path.suffix == ".safetensors" else [path]
    h = hashlib.sha256()
    for p in parts:
        digest = file_sha256(p)
        if digest is None:
            return None
        h.update(digest.encode())
    return h.hexdigest()[:HASH_HEX]


def write_weights(module: nn.Module, config: dict, folder: Path) -> None:
    """Writes ``module``'s tensors as ``model.safetensors`` and ``config`` as ``config.json`` into ``folder``,
    atomically (the net's and the digit reader's weights alike)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomic(folder / WEIGHTS_NAME, lambda p: save_file(state, p), fsync=True)
    write_atomic(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"), fsync=True)


def read_safetensors(path: Path) -> dict:
    """The tensors of a ``.safetensors`` file; a corrupt or truncated one is a one-line :class:`WeightsError`."""
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        reason = " ".join(str(e).split())[:200]
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({reason})") from None


def save_pretrained(model: DilatedNet, folder: Path, extra: dict | None = None) -> None:
    """Writes ``config.json`` + ``model.safetensors`` (plus optional metadata) atomically."""
    write_weights(model, {**model.config.to_dict(), **(extra or {})}, folder)


def check_state(state, expected: dict, source: str) -> None:
    """Refuses tensors a trained segapp net cannot hold: wrong type, non-finite values, negative variances."""
    if not isinstance(state, dict):
        raise WeightsError(f"{source}: the weights are not a mapping of tensor names to tensors")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor")
        if k in expected and expected[k].dtype.is_floating_point:
            if not v.dtype.is_floating_point:
                raise WeightsError(f"{source}: {k} is stored as {v.dtype}, not as floating point; "
                                   "these are not weights segapp saved")
            if not bool(torch.isfinite(v).all()):
                raise WeightsError(f"{source}: {k} holds NaN or infinite values; the weights are broken")
            if k.endswith("running_var") and bool((v < 0).any()):
                raise WeightsError(f"{source}: {k} holds negative variances; the weights are broken")
        elif k in expected and (v.dtype.is_floating_point or v.dtype == torch.bool):
            raise WeightsError(f"{source}: {k} should hold integers, got {v.dtype}")


def build_from_state(config: NetConfig, state: dict, source: str) -> DilatedNet:
    """Builds the net for ``config`` and loads ``state``, turning mismatches into a clear error."""
    with torch.device("meta"):  # shapes only: nothing allocated until the state is known to fit
        expected = DilatedNet(config).state_dict()
    check_state(state, expected, source)
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        what = ", ".join((bad + extra)[:3])
        raise WeightsError(
            f"{source}: weights do not fit {ARCHITECTURE} with {config} (mismatched: {what}); "
            "was it saved for another architecture or class count?"
        )
    model = DilatedNet(config)
    model.load_state_dict(state)
    return model.eval()


def _no_nan(constant: str):
    raise ValueError(f"{constant} is not a number a model config can hold")


def read_config(cfg_path: Path, weights_name: str) -> dict:
    """``config.json`` as a dict, refusing anything else (a list, non-UTF-8, NaN/Infinity, a pipe, a huge file)."""
    try:
        st = cfg_path.stat()
    except FileNotFoundError:
        raise WeightsError(f"{cfg_path}: missing; keep config.json beside {weights_name}") from None
    except OSError as e:
        raise WeightsError(f"{cfg_path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise WeightsError(f"{cfg_path}: not a regular file (a folder, pipe or device); not read")
    if st.st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{cfg_path}: {st.st_size:,} bytes is far too big for a model config")
    try:
        cfg = json.loads(cfg_path.read_bytes().decode("utf-8"), parse_constant=_no_nan)
    except OSError as e:
        raise WeightsError(f"{cfg_path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise WeightsError(f"{cfg_path}: not UTF-8 text, so not a segapp config.json") from None
    except (ValueError, RecursionError) as e:  # json.JSONDecodeError is a ValueError
        raise WeightsError(f"{cfg_path}: not valid JSON ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"{cfg_path}: must hold a JSON object ({{...}}), got a {type(cfg).__name__}")
    return cfg


def load_pretrained(path: Path | str | None = None) -> DilatedNet:
    """Loads a model from a weights folder, a ``model.safetensors`` file, or a training checkpoint.

    Nothing is unpickled beyond plain tensors and containers (safetensors, or ``torch.load`` with
    ``weights_only=True``), so a hostile file cannot run code.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        if path.exists():
            raise WeightsError(f"{path}: not a regular file (a pipe, socket or device); not read")
        raise WeightsError(f"{path}: weights not found; pass --weights PATH or train one with `segapp train`")
    if path.suffix == ".safetensors":
        cfg_path = path.with_name(CONFIG_NAME)
        config = NetConfig.from_dict(read_config(cfg_path, path.name), str(cfg_path))
        return build_from_state(config, read_safetensors(path), str(path))
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


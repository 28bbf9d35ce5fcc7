"""A second opinion on each digit's class: a small classifier of the digit's own strokes, MNIST-normalised.

The segmentation net reads a digit from every one of its pixels, each seeing a 45x45 window of its neighbourhood;
nothing in it looks at the digit as one shape, at one size, in one place. The reader does: the digit's own strokes
(its pixels in the net's class map, never its neighbours'), fitted into 20x20 and centred by mass in 28x28 as MNIST's
digits are (:func:`canonical`), classified by a small CNN trained on the same MNIST training digits through the same
real-world generator (:mod:`segapp.reader_train`). Both are wrong on other writers' shapes, but not on the same
digits: mixing their log-probabilities (:func:`segapp.reread.reread`) reads more numbers than either alone
(docs/robustness.md, session 30).

The reader never finds digits nor shapes masks: the net does both. It runs on each digit's crop, a few per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .classes import NUM_DIGITS
from .model import CONFIG_NAME, WEIGHTS_NAME, WeightsError, check_state, read_config, read_safetensors, write_weights

READER_DIR = "reader"  # the reader's folder inside a weights folder (weights/reader/config.json + model.safetensors)
LETTERS_DIR = "letters"  # a reader trained with letters, for its NOT_DIGIT class alone (segapp.words)
MNIST_CANVAS, MNIST_BOX = 28, 20  # MNIST's layout: a digit fitted into 20x20, centred by mass in 28x28
NOT_DIGIT = NUM_DIGITS  # the reader's eleventh class, where it has one: a letter or a sign, no digit at all
SIGN = NUM_DIGITS + 1  # a signs reader's twelfth class (segapp train-reader --signs): a sign, its eleventh a letter
SIGNS_DIR = "signs"  # a reader trained with letters and signs, for its SIGN class alone (segapp.signs)
CROP_INK = 0.15  # share of full ink that bounds a crop's digit (fainter pixels are the stroke's blurred edge)


@dataclass(frozen=True)
class ReaderConfig:
    """The reader's shape: three stages of two 3x3 convs (``width``, 2x, 4x channels), 2x2 pooling between them,
    global average pooling and a linear layer to the ten digits, and with ``classes`` 11 to an eleventh class,
    :data:`NOT_DIGIT` (a letter or a sign: ``segapp train-reader --letters``), with 12 a letter there and a sign in
    a twelfth, :data:`SIGN` (``--signs``)."""

    width: int = 32
    classes: int = NUM_DIGITS
    architecture: str = "segapp.DigitReader"

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 4 <= self.width <= 256:
            raise ValueError(f"reader width must be a whole number in 4..256, got {self.width!r}"[:200])
        if self.classes not in (NUM_DIGITS, NUM_DIGITS + 1, NUM_DIGITS + 2):
            raise ValueError(f"reader classes must be {NUM_DIGITS} (digits), {NUM_DIGITS + 1} (and not a digit) or "
                             f"{NUM_DIGITS + 2} (and a sign), got {self.classes!r}"[:200])
        if self.architecture != "segapp.DigitReader":
            raise ValueError(f"architecture {self.architecture!r} is not a segapp digit reader")


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DigitReader(nn.Module):
    """(N, 1, 28, 28) canonical crops in [0, 1] -> (N, classes) logits: the ten digits (and :data:`NOT_DIGIT`)."""

    def __init__(self, config: ReaderConfig = ReaderConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            *_block(1, w), *_block(w, w), nn.MaxPool2d(2),  # 28 -> 14
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),  # 14 -> 7
            *_block(2 * w, 4 * w), *_block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w, config.classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def canonical(ink: np.ndarray) -> np.ndarray | None:
    """A digit's ink (float, full ink 1, everything not the digit 0) -> its (28, 28) float32 MNIST layout: the box of
    its ink above :data:`CROP_INK` fitted into 20x20 keeping the aspect ratio, the centre of mass moved to the
    middle. None for a crop with fewer than 4 such pixels (nothing to read)."""
    ys, xs = np.nonzero(ink > CROP_INK)
    if len(ys) < 4:
        return None
    c = np.ascontiguousarray(ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], np.float32)
    h, w = c.shape
    s = MNIST_BOX / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    c = cv2.resize(c, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mass = float(c.sum())
    if mass <= 0:
        return None
    cy = float((np.arange(nh)[:, None] * c).sum()) / mass
    cx = float((np.arange(nw)[None] * c).sum()) / mass
    y0 = min(max(int(round(MNIST_CANVAS / 2 - cy)), 0), MNIST_CANVAS - nh)
    x0 = min(max(int(round(MNIST_CANVAS / 2 - cx)), 0), MNIST_CANVAS - nw)
    out = np.zeros((MNIST_CANVAS, MNIST_CANVAS), np.float32)
    out[y0 : y0 + nh, x0 : x0 + nw] = c
    return out


def own_strokes(image: np.ndarray, mine: np.ndarray) -> np.ndarray | None:
    """A window of the net's input (float, ink 1) and a digit's pixels in it (bool) -> the digit's :func:`canonical`
    crop: its pixels and the 1 px faint edge around them, every other pixel (a neighbour's stroke) blanked. The one
    crop of training (:mod:`segapp.reader_train`, by the labels) and inference (:mod:`segapp.reread`, by the net)."""
    return canonical(image * cv2.dilate(mine.astype(np.uint8), np.ones((3, 3), np.uint8)))


@torch.inference_mode()
def read_crops(reader: DigitReader | ReaderEnsemble, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(28, 28) canonical crops -> ((N, 10) float64 digit probabilities, (N,) probability of :data:`NOT_DIGIT`), in
    one batch. The digits' distribution is the softmax over their ten logits alone: a reader that also knows letters
    reads a digit as the ten-class reader did, and says apart how sure it is that the crop is no digit at all (0
    for a ten-class reader)."""
    x = torch.from_numpy(np.stack(crops))[:, None]
    logits = reader(x).float()
    digits = torch.softmax(logits[:, :NUM_DIGITS], 1).double().numpy()
    if logits.shape[1] == NUM_DIGITS:
        return digits, np.zeros(len(crops))
    return digits, torch.softmax(logits, 1)[:, NOT_DIGIT].double().numpy()


@torch.inference_mode()
def read_signs(reader: DigitReader | Callable, crops: list[np.ndarray]) -> np.ndarray:
    """(28, 28) canonical crops -> (N,) a signs reader's probability of :data:`SIGN` (its softmax over all twelve
    classes: a crop it finds a letter or a digit is no sign), in one batch."""
    logits = reader(torch.from_numpy(np.stack(crops))[:, None]).float()
    return torch.softmax(logits, 1)[:, SIGN].double().numpy()


def save_small(module: nn.Module, folder: Path, extra: dict | None = None) -> None:
    """Writes a small model's ``config.json`` (its frozen config dataclass, plus ``extra``) + ``model.safetensors``
    into ``folder`` atomically: the digit reader, the context reader, the ink judge (:func:`load_small` reads them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_weights(module, {**asdict(module.config), **(extra or {})}, folder)


def save_reader(reader: DigitReader, folder: Path, extra: dict | None = None) -> None:
    """Writes the reader's ``config.json`` + ``model.safetensors`` into ``folder`` atomically."""
    save_small(reader, folder, extra)


def load_small(folder: Path | str, config_cls, module_cls, name: str, command: str) -> nn.Module | None:
    """A small model saved in ``folder`` (``config.json`` + ``model.safetensors``: a digit reader, a context
    reader), in eval mode, or None where there is none. ``config_cls`` / ``module_cls``: its config dataclass and
    module; ``name`` and ``command`` name it and the command that retrains it in errors."""
    folder = Path(folder)
    path = folder / WEIGHTS_NAME
    if not path.exists():
        return None
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file (a pipe, socket or device); not read")
    raw = read_config(folder / CONFIG_NAME, WEIGHTS_NAME)
    try:
        config = config_cls(**{k: raw[k] for k in config_cls.__dataclass_fields__ if k in raw})
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{folder / CONFIG_NAME}: {e}") from None
    state = read_safetensors(path)
    with torch.device("meta"):
        expected = module_cls(config).state_dict()
    check_state(state, expected, str(path))
    bad = sorted(set(expected) ^ set(state))
    bad += [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if bad:
        raise WeightsError(f"{path}: weights do not fit a {name} of width {config.width} (mismatched: "
                           f"{', '.join(bad[:3])}); retrain it with `{command}`")
    module = module_cls(config)
    module.load_state_dict(state)
    return module.eval()


def load_reader(folder: Path | str) -> DigitReader | None:
    """The reader saved in ``folder`` (a weights folder's ``reader/``), or None where there is none (a net a user
    trained on their own images comes without one: its digits are read by the net alone)."""
    return load_small(folder, ReaderConfig, DigitReader, "digit reader", "segapp train-reader")


class ReaderEnsemble(nn.Module):
    """Readers whose probabilities are averaged: (N, 1, 28, 28) crops -> (N, classes) log of the members' mean
    softmax, which :func:`read_crops`' softmax turns back into that mean. Two letters readers trained on other
    letters and faces push different real digits toward "not a digit" and agree on more letters (session 37)."""

    def __init__(self, readers: list[DigitReader]):
        super().__init__()
        self.readers = nn.ModuleList(readers)
        self.config = readers[0].config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([r(x).float().softmax(1) for r in self.readers]).mean(0)
        return mean.clamp_min(1e-12).log()


def load_signs(folder: Path | str) -> DigitReader | None:
    """The reader in ``folder`` (a weights folder's ``signs/``) that tells signs from letters and digits, or None
    where there is none (a sign is then read as the digit it looks like). Only its :data:`SIGN` probability is
    used (:mod:`segapp.signs`)."""
    reader = load_reader(folder)
    if reader is not None and reader.config.classes <= SIGN:
        raise WeightsError(f"{Path(folder) / CONFIG_NAME}: this reader knows no signs; train one with "
                           "`segapp train-reader --letters 0.2 --signs 0.15` and put its folder here")
    return reader


def load_letters(folder: Path | str) -> DigitReader | ReaderEnsemble | None:
    """The reader in ``folder`` (a weights folder's ``letters/``) that tells letters from digits, or None where there
    is none (words are then read as digits). Only its :data:`NOT_DIGIT` probability is used. A folder of such
    readers' folders (each a `segapp train-reader --letters ... --out` copied whole, its args.json with it) is
    one :class:`ReaderEnsemble`, members in name order."""
    folder = Path(folder)
    if (folder / WEIGHTS_NAME).exists() or not folder.is_dir():
        paths = [folder]  # one reader (or none)
    else:
        paths = sorted(p for p in folder.iterdir() if (p / WEIGHTS_NAME).exists())
    readers = [load_reader(p) for p in paths]
    for path, reader in zip(paths, readers):
        if reader is not None and reader.config.classes <= NUM_DIGITS:
            raise WeightsError(f"{path / CONFIG_NAME}: this reader knows digits only, so it cannot tell a letter; "
                               "train one with `segapp train-reader --letters 0.2` and put its folder here")
    readers = [r for r in readers if r is not None]
    if len(readers) > 1:
        return ReaderEnsemble(readers).eval()
    return readers[0] if readers else None

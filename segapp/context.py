"""A glyph read with its neighbours: is it a letter of a word, or a digit of a number?

The letters reader (:mod:`segapp.reader`, ``weights/letters``) sees one glyph at a time, cropped to its own strokes.
Many letters are a digit's shape alone (the "o"s of "Room", the "l" of "Tel", an "eat" the net coloured as one 6),
and only the word around them says otherwise; a font's own spacing leaves no gap for a rule to cut the word from the
number (session 37: 28% of such lines read). The context reader sees a window of the line around the glyph, three
of the line's digit heights either side, with the glyph's own pixels marked in a second channel, and says how
likely the glyph is a letter or a sign: a number's digits beside a word's letters, a word's letters beside each
other.

Windows are cut the same way in training (:mod:`segapp.context_train`, from generated lines whose numbers are
MNIST training digits) and at inference (:func:`windows`): the line's height and middle row come from its tall
glyphs' boxes (:func:`frame`), so a lowercase letter sits low in its window as it sits low in its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .reader import load_small, save_small

CONTEXT_DIR = "context"  # the context reader's folder inside a weights folder
WINDOW = (32, 96)  # (h, w) px of a window: the line's digit height is REF px, three of them either side
REF = 16  # px: the line's digit height in a window
TALL = 0.75  # share of the line's tallest glyph from which a glyph counts as tall (a digit, a capital, an ascender)


@dataclass(frozen=True)
class ContextConfig:
    """The context reader's shape: four 3x3 conv stages (``width``, 2x, 4x, 4x channels) with 2x2 pooling, then two
    linear layers over the pooled map (which keeps where in the window things are: the middle is the glyph)."""

    width: int = 16
    architecture: str = "segapp.ContextReader"

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 4 <= self.width <= 128:
            raise ValueError(f"context reader width must be a whole number in 4..128, got {self.width!r}"[:200])
        if self.architecture != "segapp.ContextReader":
            raise ValueError(f"architecture {self.architecture!r} is not a segapp context reader")


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


class ContextReader(nn.Module):
    """(N, 2, 32, 96) windows (the line's ink in [0, 1], the glyph's own pixels) -> (N,) logit of a letter."""

    def __init__(self, config: ContextConfig = ContextConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(*_block(2, w), *_block(w, 2 * w), *_block(2 * w, 4 * w),  # 32x96 -> 4x12
                                      *_block(4 * w, 4 * w), nn.Flatten())  # -> 2x6
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w * 12, 64), nn.ReLU(inplace=True),
                                  nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))[:, 0]


def frame(boxes: list[list[float]]) -> tuple[float, float]:
    """A line's glyph boxes ([x0, y0, x1, y1]) -> (its digit height, its middle row): the median height and centre
    of its tall glyphs (:data:`TALL` of the tallest), so a lowercase letter neither sets the scale nor the middle."""
    hs = np.array([b[3] - b[1] for b in boxes], np.float64)
    tall = hs >= TALL * hs.max()
    mid = np.array([(b[1] + b[3]) / 2 for b in boxes])[tall]
    return float(np.median(hs[tall])), float(np.median(mid))


def window(image: np.ndarray, own: np.ndarray, box: list[int], height: float, middle: float) -> np.ndarray:
    """One glyph's window: ``image`` (H, W) float ink in [0, 1] and ``own`` (box h, box w) bool, its pixels in its
    ``box`` -> (2, 32, 96) float32, the line scaled so its digit ``height`` is :data:`REF` px, the glyph's box
    centre at the middle column and the line's ``middle`` row at the middle row."""
    x0, y0, x1, y1 = box
    f = REF / max(height, 1.0)
    (h, w), cx = WINDOW, (x0 + x1) / 2
    m = np.float32([[f, 0, w / 2 - f * cx], [0, f, h / 2 - f * middle]])
    ink = cv2.warpAffine(image.astype(np.float32), m, (w, h), flags=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    m[:, 2] += f * np.float32([x0, y0])  # the glyph's mask from its box's corner
    mine = cv2.warpAffine(own.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
    return np.stack([ink, mine])


def windows(image: np.ndarray, line: list[tuple[list[int], np.ndarray]]) -> np.ndarray:
    """A line's glyphs, (box, own pixels) each, on ``image`` -> (N, 2, 32, 96) float32 windows (:func:`window`)."""
    height, middle = frame([b for b, _ in line])
    return np.stack([window(image, own, box, height, middle) for box, own in line])


@torch.no_grad()
def letter_probability(reader: ContextReader, x: np.ndarray) -> np.ndarray:
    """(N, 2, 32, 96) windows -> (N,) float64 probability that each glyph is a letter or a sign."""
    if not len(x):
        return np.zeros(0)
    return torch.sigmoid(reader(torch.from_numpy(np.ascontiguousarray(x, np.float32))).float()).double().numpy()


def save_context(reader: ContextReader, folder: Path, extra: dict | None = None) -> None:
    """Writes the context reader's ``config.json`` + ``model.safetensors`` into ``folder`` atomically."""
    save_small(reader, folder, extra)


def load_context(folder: Path | str) -> ContextReader | None:
    """The context reader saved in ``folder`` (a weights folder's ``context/``), or None where there is none."""
    return load_small(folder, ContextConfig, ContextReader, "context reader", "segapp train-context")


__all__ = ["CONTEXT_DIR", "ContextConfig", "ContextReader", "frame", "window", "windows", "letter_probability",
           "save_context", "load_context"]

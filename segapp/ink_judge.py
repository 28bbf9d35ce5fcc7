"""Where a blurred stroke was drawn: a small net that estimates a photo's clean ink at the input's own resolution.

A digit's mask follows its stroke ink (:mod:`segapp.ink`), and the truth's edge of a stroke is a quarter of its full
ink before the photo blurred it (fainter is the void band). A blur of one pixel spreads a 2-px stroke over 4-5 px;
a threshold at a share of the local peak (:func:`segapp.ink.stroke_ink`) then either keeps a pixel past the void
band or cuts a faint stroke, and at 13-20 px most of a digit's pixels are edge (session 39: read-right photographs
at 13-20 px lost 0.05 mIoU, almost all of it one pixel past the void band; three threshold rules did not recover it).

The ink judge learns the blur instead: four dilated 3x3 convolutions (dilations 1-2-1-1, an 11 x 11 px view, no
pooling or stride, the project's thesis in small) from the normalised ink (``normalise(faint=True, tophat=0)``, what
:func:`segapp.ink.ink_map` gives, each stroke stretched to full ink: :func:`segapp.ink.stretched`) to the clean ink
it came from, trained on photographed and resampled MNIST training digits whose clean ink is known
(:mod:`segapp.ink_judge_train`). A pixel is stroke where the estimate
reaches :data:`segapp.ink.JUDGED_INK` (a little under the truth's quarter: the estimate is a mean), in photos and
scans on paper whose digits follow the ``spread`` rule (under 18 px, or resampled) and are at most
:data:`segapp.ink.JUDGED_HEIGHT` px tall; beside an unsure digit it only takes the thresholds' ink away (grain it lit
grew into a "6" on a blank frame, session 42). Shipped as ``weights/ink`` since session 43 (docs/robustness.md,
sessions 40-43).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .reader import load_small, save_small

INK_DIR = "ink"  # the ink judge's folder inside a weights folder (weights/ink/config.json + model.safetensors)


@dataclass(frozen=True)
class InkJudgeConfig:
    """The ink judge's shape: 3x3 convolutions of ``width`` channels at ``dilations``, each + ReLU, then a 1x1 conv
    to one logit of the clean ink per pixel. Its view is 1 + 2 * sum(dilations) px a side."""

    width: int = 16
    dilations: tuple[int, ...] = (1, 2, 1, 1)
    architecture: str = "segapp.InkJudge"

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 4 <= self.width <= 128:
            raise ValueError(f"ink judge width must be a whole number in 4..128, got {self.width!r}"[:200])
        object.__setattr__(self, "dilations", tuple(self.dilations))
        if not self.dilations or not all(isinstance(d, int) and 1 <= d <= 8 for d in self.dilations):
            raise ValueError(f"ink judge dilations must be whole numbers in 1..8, got {self.dilations!r}"[:200])
        if self.architecture != "segapp.InkJudge":
            raise ValueError(f"architecture {self.architecture!r} is not a segapp ink judge")


class InkJudge(nn.Module):
    """(N, 1, H, W) normalised ink in [0, 1] -> (N, 1, H, W) logits of the clean ink (its sigmoid: a share of full
    ink), at the same resolution: padding keeps every size, as the segmentation net does."""

    def __init__(self, config: InkJudgeConfig = InkJudgeConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c = 1
        for d in config.dilations:
            layers += [nn.Conv2d(c, config.width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            c = config.width
        self.body = nn.Sequential(*layers, nn.Conv2d(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def view(self) -> int:
        """px a side of what one output pixel sees."""
        return 1 + 2 * sum(self.config.dilations)


@torch.no_grad()
def clean_ink(judge: InkJudge, ink: np.ndarray) -> np.ndarray:
    """(H, W) uint8 normalised ink -> (H, W) uint8 estimate of the clean ink before blur and noise (255: full)."""
    x = torch.from_numpy(np.ascontiguousarray(ink, np.float32) / 255.0)[None, None]
    return (torch.sigmoid(judge(x))[0, 0].numpy() * 255.0).round().astype(np.uint8)


def save_ink_judge(judge: InkJudge, folder: Path, extra: dict | None = None) -> None:
    """Writes the ink judge's ``config.json`` + ``model.safetensors`` into ``folder`` atomically."""
    save_small(judge, folder, extra)


def load_ink_judge(folder: Path | str) -> InkJudge | None:
    """The ink judge saved in ``folder`` (a weights folder's ``ink/``), or None where there is none (masks then
    follow :func:`segapp.ink.stroke_ink`'s thresholds alone)."""
    return load_small(folder, InkJudgeConfig, InkJudge, "ink judge", "segapp train-ink")


__all__ = ["INK_DIR", "InkJudgeConfig", "InkJudge", "clean_ink", "save_ink_judge", "load_ink_judge"]

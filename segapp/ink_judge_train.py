"""Training the ink judge (:mod:`segapp.ink_judge`) on pictures whose clean ink is known: ``segapp train-ink``.

Each picture is a row or two of MNIST training digits laid out by the net's generator (:func:`segapp.synth.layout`:
re-penned, slanted, wobbled, thickened) at 11-36 px tall, at the input's own resolution, as the judge runs. The clean
ink (float, 1 = full) is the target; what the judge sees is that ink photographed (:func:`segapp.synth.photograph`:
tinted, unevenly lit, ruled paper, specks, smudges, blur, noise, JPEG) or resampled from a smaller original, blurred,
noisy and compressed, then normalised as the masks' ink is (``normalise(faint=True, tophat=0)``). A third of the
pictures have their clean ink sharpened first (a felt pen's or a font's crisp edge, where MNIST's strokes fade over
a pixel or two), so the judge learns a blur, not MNIST's stroke profile.

The loss is binary cross-entropy against the clean ink as a soft target: the judge's sigmoid estimates the share of
full ink, which :func:`segapp.ink.ink_refine` compares with :data:`segapp.ink.JUDGED_INK` (near the truth's quarter).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .classes import SegappError
from .ink import STROKE_RADIUS, stretched
from .ink_judge import InkJudge, InkJudgeConfig, save_ink_judge
from .m2nist import digit_pool
from .normalise import normalise
from .safeio import write_atomic
from .synth import EDGE, WildConfig, layout, photograph
from .train_loop import check_small_run, fit_small, start_small_run

PICTURE = (48, 128)  # (h, w) px of a training picture
SCALE = (0.55, 1.8)  # digit height / 20 px: 11-36 px, around where the judge runs (segapp.ink.JUDGED_HEIGHT: 24)


@dataclass(frozen=True)
class InkTrainConfig:
    """Every argument of ``segapp train-ink`` (the CLI maps its flags onto it; ``args.json`` records it)."""

    pictures: int = 8_000  # generated pictures (each 48 x 128 px)
    photo: float = 0.6  # share of them photographed; the rest resampled, blurred, noisy, compressed at random
    sharp: float = 0.33  # share whose clean ink is sharpened first (a crisp pen or a font's edge)
    light: float = 0.5  # share with part of the picture written light-handed (0.15-0.6 of the rest's contrast)
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    width: int = 16
    seed: int = 0
    out: str = "runs/ink"
    workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        check_small_run(self, ("pictures", "epochs", "batch_size", "width"), ("photo", "sharp", "light"),
                        images="pictures")


def picture(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, photo: float = 0.6,
            sharp: float = 0.33, light: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: (what the judge sees, the clean ink), both (48, 128) uint8 (255: full ink).

    What it sees is what :func:`segapp.ink.ink_refine` gives it: the normalised ink with each stroke stretched to
    full ink (:func:`segapp.ink.stretched`, over the stroke radius the digits' height gives). With probability
    ``light`` the digits on one side of a random column are written light-handed (0.15-0.6 of the others' contrast)
    while their clean ink stays full: a faint stroke is a stroke, whatever its neighbours' ink."""
    s = float(np.exp(rng.uniform(*np.log(SCALE))))  # digit height / 20 px
    cfg = WildConfig(height=PICTURE[0], width=PICTURE[1], scale=(s, s), two_rows=0.2)
    ink, _ = layout(rng, digits, labels, cfg)
    if rng.random() < sharp:  # a crisp edge: the stroke's fading rim pulled in to a pixel
        ink = np.clip((ink - 0.15) / 0.3, 0.0, 1.0)
    drawn = ink
    if rng.random() < light:  # one side light-handed, the change over a couple of px
        cut, c = rng.uniform(0.2, 0.8) * PICTURE[1], rng.uniform(0.15, 0.6)
        w = 1.0 / (1.0 + np.exp(-(np.arange(PICTURE[1]) - cut) / 1.5))  # 0 left of the cut, 1 right of it
        w = w if rng.random() < 0.5 else 1.0 - w
        drawn = (ink * (1.0 - (1.0 - c) * w)[None, :]).astype(np.float32)
    if rng.random() < photo:
        gray, inverted = photograph(drawn, rng, 0.3), True
    else:
        g = drawn * 255.0
        if rng.random() < 0.5:  # a small original enlarged
            f = rng.uniform(0.5, 0.9)
            small = cv2.resize(g, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            g = cv2.resize(small, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.4, 1.2))
        if rng.random() < 0.5:
            g = g + rng.normal(0, rng.uniform(2, 12), g.shape)
        gray, inverted = np.clip(g, 0, 255).round().astype(np.uint8), False
        if rng.random() < 0.5:
            _, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
            gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    seen, _ = normalise(gray, inverted=inverted, faint=True, tophat=0)
    radius = math.ceil(STROKE_RADIUS * min(s, 1.0))  # ink_refine's: 3 px at the net's scale, less for smaller digits
    return stretched(seen, radius), np.clip(ink * 255.0, 0, 255).round().astype(np.uint8)


class Pictures(Dataset):
    """``n`` pictures, the i-th from its own seed (the same for any number of workers)."""

    def __init__(self, n: int, seed: int, mix: tuple[float, float, float]):
        self.n, self.seed, self.mix = n, seed, mix  # (photo, sharp, light): picture()'s shares
        self.digits: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.digits is None:
            self.digits = digit_pool("train")  # MNIST training digits only (the val pool is left out)
        return picture(np.random.default_rng([self.seed, i]), *self.digits, *self.mix)


def _stack(batch):
    return np.stack([s for s, _ in batch]), np.stack([c for _, c in batch])


def make_pictures(n: int, seed: int, workers: int, mix: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 48, 128) seen and (n, 48, 128) clean uint8 arrays, in order (``mix``: picture()'s photo, sharp and
    light shares)."""
    loader = DataLoader(Pictures(n, seed, mix), batch_size=64, num_workers=workers, collate_fn=_stack)
    seen, clean = zip(*loader)
    return np.concatenate(seen)[:, None], np.concatenate(clean)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator):
    """Shuffled full batches, flipped left-right half the time (a blur has no direction)."""
    order = torch.randperm(len(x), generator=generator)
    for k in range(len(x) // size):
        idx = order[k * size : (k + 1) * size]
        bx, by = x[idx].float().div_(255.0), y[idx].float().div_(255.0)[:, None]
        if torch.rand(1, generator=generator).item() < 0.5:
            bx, by = bx.flip(3), by.flip(3)
        yield bx, by


@torch.no_grad()
def scores(judge: InkJudge, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The held-out pictures' stroke pixels (clean ink >= a quarter) as the judge finds them: IoU, and the shares
    of true strokes found and of pixels with no clean ink at all called stroke (the void band, 0 < ink < a
    quarter, is not scored, as the truth leaves it)."""
    judge.eval()
    p = torch.cat([torch.sigmoid(judge(x[k : k + 256].float().div(255.0))) for k in range(0, len(x), 256)])[:, 0]
    p = p >= EDGE  # (the truth's rule: a quarter of full ink)
    t = y.float().div(255.0)
    stroke, none = t >= EDGE, t == 0
    inter, union = (p & stroke).sum(), (p & (stroke | none)).sum() + (stroke & ~p).sum()
    return {"iou": round(float(inter / union.clamp(min=1)), 4),
            "strokes_found": round(float((p & stroke).sum() / stroke.sum().clamp(min=1)), 4),
            "blank_called_stroke": round(float((p & none).sum() / none.sum().clamp(min=1)), 5)}


def run(cfg: InkTrainConfig, argv: list[str] | None = None) -> dict:
    """Trains an ink judge per ``cfg`` into ``cfg.out`` (config.json + model.safetensors, args.json, metrics.json);
    returns the metrics."""
    out, progress, device, amp = start_small_run(cfg, argv)
    t0 = time.time()
    mix = (cfg.photo, cfg.sharp, cfg.light)
    x, y = make_pictures(cfg.pictures, cfg.seed, cfg.workers, mix)
    vx, vy = make_pictures(max(2, cfg.pictures // 20), cfg.seed + 1_000_003, cfg.workers, mix)
    if len(x) < cfg.batch_size:
        raise SegappError(f"{cfg.pictures} pictures are fewer than one batch of {cfg.batch_size}; raise --pictures "
                          "or lower --batch-size")
    x, y, vx, vy = (torch.from_numpy(a) for a in (x, y, vx, vy))
    print(f"{len(x):,} training pictures, {len(vx):,} held out ({time.time() - t0:.0f} s)", file=sys.stderr)
    judge = InkJudge(InkJudgeConfig(width=cfg.width)).to(device)
    history = fit_small(judge, cfg, lambda g: _batches(x, y, cfg.batch_size, g), len(x) // cfg.batch_size,
                        lambda: scores(judge, vx.to(device), vy.to(device)),
                        lambda h: f"held-out stroke IoU {h['iou']:.4f} (found {h['strokes_found']:.2%}, blank "
                                  f"called stroke {h['blank_called_stroke']:.3%})", device, amp, progress)
    judge = judge.cpu().eval()
    metrics = {**history[-1], "train_pictures": len(x), "held_pictures": len(vx), "seconds": round(time.time() - t0),
               "history": history}
    save_ink_judge(judge, out, extra={"trained_with": argv, "held_iou": history[-1]["iou"]})
    write_atomic(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics

"""Training the context reader (:mod:`segapp.context`) on generated text lines: ``segapp train-context``.

A line is words and numbers side by side ("Fig 12", "7 kg", "Rate 42 mm"), one writer's slant for all of it. The
numbers' digits are MNIST training digits, transformed as the net's generator transforms them
(:func:`segapp.synth.glyph_patch`: re-penned, wobbled, thickened); the words are random strings of any letters
(an "o" or an "l" too: here the word says what they are), set whole by a font or OpenCV's Hershey faces with the
face's own spacing, or letter by letter as a hand spaces them, and transformed the same way. Every glyph (a
connected part of one label: touching letters are one, as the net colours them) gives one window
(:func:`segapp.context.window`) labelled letter or digit. Lines then go through the generator's photograph and
normalisation (:func:`segapp.synth.finish`), so windows are cut from what the net's input looks like.
"""

from __future__ import annotations

import json
import string
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .classes import BACKGROUND, NUM_DIGITS, SegappError
from .context import WINDOW, ContextConfig, ContextReader, frame, save_context, window
from .glyphs import READER_GLYPHS, draw_glyph, font_files
from .m2nist import load_mnist
from .reader_train import LETTER  # a letter's label in generated images (a class no net has)
from .render import group_lines
from .safeio import write_atomic
from .scale import TARGET_HEIGHT
from .synth import WildConfig, finish, glyph_patch, stamp, wild_sample
from .train_loop import check_small_run, fit_small, start_small_run

ASCENDING, DESCENDING = set("bdfhklt"), set("gjpqy")  # lowercase letters above the x-height / below the baseline
LONE_SIGNS = "#%&@*"  # a word now and then is one of these alone
LENGTHS = (1, 2, 2, 3, 3, 4, 4, 5, 6, 7)  # a word's letters, drawn uniformly from this list
PATTERNS = ("N", "NN", "W", "WW", "WN", "NW", "WNW", "WWN", "NWW", "WN", "NW", "WNW")  # a line's tokens in order


@dataclass(frozen=True)
class ContextTrainConfig:
    """Every argument of ``segapp train-context`` (the CLI maps its flags onto it; ``args.json`` records it)."""

    lines: int = 40_000  # generated images (about 8 windows each from a text line, 3.5 from a canvas)
    canvases: float = 0.0  # share of them that are the net's training canvases (segapp.synth.wild_sample: digits
    # in two rows, touching, up and down as M2NIST places them; letters among them), so digits out of a row are
    # digits too
    line_style: float = 0.0  # share of text lines written with one pen and one spacing for letters and digits alike
    # (text_line's ``style``)
    epochs: int = 6
    batch_size: int = 256
    lr: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    fonts: tuple[str, ...] = ()  # font files or folders half the words are set in (resolved to files)
    width: int = 16
    seed: int = 0
    out: str = "runs/context"
    workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        check_small_run(self, ("lines", "epochs", "batch_size", "width"), ("canvases", "line_style"), images="lines")
        try:
            object.__setattr__(self, "fonts", font_files(tuple(self.fonts)))
        except ValueError as e:
            raise SegappError(f"--fonts {e}") from None


def _word(rng: np.random.Generator) -> str:
    """A random word: any letters, capitalised, lowercase or in capitals; now and then a sign alone."""
    if rng.random() < 0.06:
        return LONE_SIGNS[int(rng.integers(0, len(LONE_SIGNS)))]
    n = LENGTHS[int(rng.integers(0, len(LENGTHS)))]
    w = "".join(string.ascii_lowercase[int(k)] for k in rng.integers(0, 26, n))
    r = rng.random()
    return w.capitalize() if r < 0.45 else w if r < 0.8 else w.upper()


def _extent(text: str) -> tuple[float, float]:
    """Where ``text``'s ink starts and ends below the line's top, in digit heights (x-height 0.6, descenders 0.25)."""
    top = 0.0 if any(c.isupper() or c in ASCENDING or not c.isalpha() for c in text) else 0.4
    return top, 1.25 if any(c in DESCENDING for c in text) else 1.0


def text_line(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, fonts: tuple[str, ...] = (),
              height: int = 48, width: int = 192, style: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One generated line -> (ink (H, W) float, label (H, W) uint8: digits 0-9, :data:`LETTER`, background).

    With probability ``style`` (no draw at 0: the shipped reader's stream) the line is one writer's: every glyph,
    letter or digit, drawn with one pen (nib, width, marker), upright, one size and on one baseline, set with one
    spacing, as a font or an even hand sets both. Otherwise each digit has its own pen, size, lean and spacing while
    a word set whole shares one, and a reader learns that a run of even glyphs is a word (a typed number is one)."""
    cfg = replace(WildConfig(), slant=0.08, rotate=5.0)  # the line's one slant is sheared in below
    pen_seed, spacing, size, drop = None, None, (0.9, 1.1), 1.0
    if style and rng.random() < style:
        cfg = replace(cfg, repen=1.0, slant=0.0, rotate=0.0, aspect=(-0.25, 0.15), elastic=0.3)
        pen_seed, spacing = int(rng.integers(0, 2**31)), (-0.1, float(rng.uniform(0.05, 0.35)))
        size, drop = (0.98, 1.02), 0.2
    canvas = (np.zeros((height, width), np.float32), np.zeros((height, width), np.float32),
              np.full((height, width), BACKGROUND, np.uint8), np.zeros((height, width), bool))
    base = TARGET_HEIGHT * float(np.exp(rng.uniform(np.log(0.75), np.log(1.3))))
    y_row = rng.uniform(2, max(3.0, height - 1.3 * base - 2))
    tight = rng.random() < 0.5  # a font's spacing: spaces a fifth to under half a digit's height
    x = rng.uniform(-0.3, 0.6) * base
    pattern = PATTERNS[int(rng.integers(0, len(PATTERNS)))]
    k = 0
    while x < width:
        kind = pattern[k] if k < len(pattern) else "NW"[int(rng.integers(0, 2))]
        k += 1
        pieces: list[tuple[np.ndarray, int, float]] = []  # (patch, owner, its top below the line's, digit heights)
        if kind == "N":
            for _ in range(int(rng.integers(1, 5))):
                j, h = int(rng.integers(0, len(digits))), base * rng.uniform(*size)
                pieces.append((glyph_patch(digits[j], h, rng, cfg, int(labels[j]), **_pen(pen_seed, base, h)),
                               int(labels[j]), rng.uniform(-0.06, 0.06) * drop))
        else:
            word = _word(rng)
            parts = [word] if rng.random() < 0.65 else list(word)  # set whole, or letter by letter by hand
            for part in parts:
                top, bottom = _extent(part)
                glyph, h = draw_glyph(part, rng, fonts), (bottom - top) * base * rng.uniform(*size)
                pieces.append((glyph_patch(glyph, h, rng, cfg, **_pen(pen_seed, base, h)), LETTER, top))
        for p, owner, top in pieces:
            nz = np.nonzero(p.max(0) > 0.1)[0]
            left, right = (nz[0], nz[-1]) if len(nz) else (0, p.shape[1] - 1)
            x0 = int(round(x - left))
            stamp(canvas, p, owner, x0, int(round(y_row + top * base - 6)))  # (-6: the patch's padding)
            inner = rng.uniform(*spacing) if spacing else rng.uniform(-0.1, 0.2) if owner == LETTER else \
                rng.uniform(*cfg.gap) / TARGET_HEIGHT
            x = x0 + right + inner * base
        x += (rng.uniform(0.15, 0.45) if tight else rng.uniform(0.35, 1.0)) * base
    ink, _, label, _ = canvas
    shear = rng.uniform(-0.15, 0.5) if rng.random() < 0.6 else rng.uniform(-0.05, 0.05)
    m = np.float32([[1, -shear, shear * (y_row + base / 2)], [0, 1, 0]])  # leaning right, about the line's middle
    ink = cv2.warpAffine(ink, m, (width, height), flags=cv2.INTER_LINEAR)
    label = cv2.warpAffine(label, m, (width, height), flags=cv2.INTER_NEAREST, borderValue=BACKGROUND)
    return ink, label


def _pen(seed: int | None, base: float, height: float) -> dict:
    """:func:`segapp.synth.glyph_patch`'s pen arguments for a glyph ``height`` px tall in a line of digits ``base``
    px tall: the line's one pen (seed None: none, each glyph draws its own)."""
    return {} if seed is None else {"pen": seed, "pen_scale": base / height}


def glyph_windows(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                  rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A line's image and labels -> (N, 2, 32, 96) uint8 windows of its glyphs and (N,) 1 for a letter, 0 a digit;
    the line's height and middle jittered a little (the net's boxes are not the labels'). ``rows``: the image may
    hold several rows (a canvas), grouped into lines as inference groups them; else it is one line."""
    H, W = label.shape
    found = []
    for c in [*range(NUM_DIGITS), LETTER]:
        n, parts, stats, _ = cv2.connectedComponentsWithStats((label == c).view(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = stats[k].tolist()
            if h >= 5 and area >= 10 and x > 0 and x + w < W:
                found.append(([x, y, x + w, y + h], parts[y : y + h, x : x + w] == k, int(c == LETTER)))
    if not found:
        return np.zeros((0, 2, *WINDOW), np.uint8), np.zeros(0, np.int64)
    out, ys = [], []
    glyphs = [{"bbox": b, "own": own, "y": y} for b, own, y in found]
    for line in group_lines(glyphs) if rows else [glyphs]:  # a canvas's rows as inference groups them
        height, middle = frame([d["bbox"] for d in line])
        for d in line:
            h = height * rng.uniform(0.9, 1.12)
            out.append(window(image, d["own"], d["bbox"], h, middle + rng.uniform(-0.08, 0.08) * h))
            ys.append(d["y"])
    return np.round(np.stack(out) * 255).clip(0, 255).astype(np.uint8), np.array(ys, np.int64)


class LineWindows(Dataset):
    """Image ``i`` of the generator, seeded by (seed, i): a text line, or with probability ``canvases`` one of the
    net's training canvases with letters among its digits -> its glyphs' windows and labels."""

    def __init__(self, n: int, seed: int, fonts: tuple[str, ...] = (), canvases: float = 0.0, style: float = 0.0):
        self.n, self.seed, self.fonts, self.canvases, self.style = n, seed, fonts, canvases, style
        self.digits, self.labels = load_mnist("train")
        self.recipe = WildConfig(letters=0.2, letter_label=LETTER, letter_chars=READER_GLYPHS, letter_fonts=fonts,
                                 letter_runs=0.3)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, 40, i])
        if self.canvases and rng.random() < self.canvases:  # (no draw at 0: the shipped reader's stream)
            image, label = wild_sample(rng, self.digits, self.labels, self.recipe)
            return glyph_windows(image, label, rng, rows=True)
        ink, label = text_line(rng, self.digits, self.labels, self.fonts, style=self.style)
        return glyph_windows(finish(ink, rng), label, rng)


def _cat(batch):
    return np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])


def make_windows(n: int, seed: int, workers: int, fonts: tuple[str, ...] = (),
                 canvases: float = 0.0, style: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The windows of ``n`` generated images, in their order (the same for any ``workers``)."""
    loader = DataLoader(LineWindows(n, seed, fonts, canvases, style), batch_size=32, num_workers=workers,
                        collate_fn=_cat)
    xs, ys = zip(*loader)
    return np.concatenate(xs), np.concatenate(ys)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator):
    """Shuffled full batches, each shifted by up to 2 px across (a box's centre is not the glyph's)."""
    order = torch.randperm(len(x), generator=generator)
    for k in range(len(x) // size):
        idx = order[k * size : (k + 1) * size]
        dx = int(torch.randint(-2, 3, (1,), generator=generator))
        yield torch.roll(x[idx].float().div_(255.0), dx, 3), y[idx].float()


@torch.no_grad()
def scores(reader: ContextReader, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Share of windows judged right at 0.5, of letters and of digits (reader in eval mode)."""
    reader.eval()
    p = torch.cat([reader(x[k : k + 1024].float().div(255.0)) for k in range(0, len(x), 1024)]) > 0
    letters, digits = y == 1, y == 0
    return {"letters_right": round(float(p[letters].float().mean()), 4),
            "digits_right": round(float((~p[digits]).float().mean()), 4)}


def run(cfg: ContextTrainConfig, argv: list[str] | None = None) -> dict:
    """Trains a context reader per ``cfg`` into ``cfg.out`` (config.json + model.safetensors, args.json,
    metrics.json); returns the metrics."""
    out, progress, device, amp = start_small_run(cfg, argv)
    t0 = time.time()
    x, y = make_windows(cfg.lines, cfg.seed, cfg.workers, cfg.fonts, cfg.canvases, cfg.line_style)
    vx, vy = make_windows(max(2, cfg.lines // 20), cfg.seed + 1_000_003, cfg.workers, cfg.fonts, cfg.canvases,
                          cfg.line_style)
    if len(x) < cfg.batch_size:
        raise SegappError(f"{cfg.lines} lines gave {len(x)} windows, fewer than one batch of {cfg.batch_size}; "
                          "raise --lines or lower --batch-size")
    x, y, vx, vy = (torch.from_numpy(a) for a in (x, y, vx, vy))
    print(f"{len(x):,} training windows ({float(y.float().mean()):.0%} letters), {len(vx):,} held out "
          f"({time.time() - t0:.0f} s)", file=sys.stderr)
    reader = ContextReader(ContextConfig(width=cfg.width)).to(device)
    history = fit_small(reader, cfg, lambda g: _batches(x, y, cfg.batch_size, g), len(x) // cfg.batch_size,
                        lambda: scores(reader, vx.to(device), vy.to(device)),
                        lambda h: f"held-out letters {h['letters_right']:.2%}, digits {h['digits_right']:.2%}",
                        device, amp, progress)
    reader = reader.cpu().eval()
    metrics = {**history[-1], "train_windows": len(x), "held_windows": len(vx), "seconds": round(time.time() - t0),
               "history": history}
    held = {k: history[-1][k] for k in ("letters_right", "digits_right")}
    save_context(reader, out, extra={"trained_with": argv, **held})
    write_atomic(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics

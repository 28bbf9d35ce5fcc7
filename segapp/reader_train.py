"""`segapp train-reader`: trains the digit reader (:mod:`segapp.reader`) on crops of the net's own training images.

The crops come from :func:`segapp.synth.wild_sample`, the real-world generator the net trains on (MNIST training
digits only, re-stroked, slanted, photographed, on ruled paper, touching), so the reader sees each digit as the net's
input shows it: each digit's pixels by its label (neighbours' strokes masked out, the faint edge kept), laid out as
:func:`~segapp.reader.canonical` lays out a digit at inference. The crops are made once (in ``workers`` processes),
then trained on for ``epochs`` passes with shifts of up to 2 px, each crop varied anew in each pass (:func:`vary`),
by the training engine the net uses (:func:`segapp.train_loop.train_one_epoch`). 5% of the canvases are held out and
scored after each epoch.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .classes import NUM_DIGITS, SegappError
from .glyphs import READER_GLYPHS, SIGN_GLYPHS, font_files
from .m2nist import load_mnist
from .reader import NOT_DIGIT, SIGN, DigitReader, ReaderConfig, own_strokes, save_reader
from .safeio import write_atomic
from .synth import WildConfig, wild_sample
from .train_loop import check_small_run, start_small_run, train_one_epoch

LETTER = 11  # the label map's value for a letter's strokes in the reader's canvases (a class no net has)
SIGN_LABEL = 12  # ... and for a sign's (--signs: a slash, a bracket, a dollar among the digits)
MIN_CROP_AREA, MIN_CROP_HEIGHT = 15, 8  # smaller label parts are a digit's piece cut off by a neighbour
MIN_LETTER_HEIGHT = 12  # px: a smaller letter is a blur no shape tells from a digit's (a lowercase letter, small)
TURN = 12.0  # degrees: at --augment 1 crops are turned by up to this much either way ...
SHEAR = 0.3  # ... sheared by up to this much (a slant of ~17 degrees) ...
STRETCH = (-0.2, 0.15)  # ... each axis scaled by 1 plus a share within this range (a narrow or a broad hand) ...
GAMMA = 2.0  # ... their ink raised to a power within 1/GAMMA .. GAMMA (a stroke's soft edge fuller or fainter) ...
BLURRED = 0.25  # ... and this share blurred (a photographed digit's soft strokes)
SPAN = 20 / 28  # half the crop's extent a digit spans (normalised coordinates: MNIST's 20 px box in 28)
CELLS = (8, 14)  # --low-res: a crop's 28 px averaged down to this many cells a side (its ~20 px digit to ~6-10)


@dataclass(frozen=True)
class ReaderTrainConfig:
    """Every argument of ``segapp train-reader`` (the CLI maps its flags onto it; ``args.json`` records it)."""

    canvases: int = 100_000  # generated training images (about 3.2 crops each)
    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    augment: float = 1.0  # how far each crop is varied every time it is seen (vary): 0 never, 1 the ranges of TURN..
    low_res: float = 0.0  # share of crops (when varied) rebuilt from a few cells (vary: a scan or a thumbnail)
    pointed_four: float = 0.0  # share of the generator's styled 4s closed into a triangle (WildConfig.pointed_four)
    proportions: float = 0.0  # how far a varied crop's parts are resized against each other (vary, _proportions)
    letters: float = 0.0  # share of the generator's glyphs that are letters or signs (READER_GLYPHS), NOT_DIGIT crops
    letter_chars: str = READER_GLYPHS  # the letters and signs drawn (segapp.glyphs draws any Hershey has)
    letter_fonts: tuple[str, ...] = ()  # font files or folders half the letters are drawn with (resolved to files)
    letter_runs: float = 0.0  # share of the letters drawn as a run of two or three of them, one crop (segapp.glyphs)
    signs: float = 0.0  # share of the glyphs that are signs (sign_chars), crops of a twelfth class (reader.SIGN)
    sign_chars: str = SIGN_GLYPHS  # the signs drawn (no letter of letter_chars), in Hershey's faces and letter_fonts
    width: int = 32
    seed: int = 0
    out: str = "runs/reader"
    workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    quiet: bool = False  # no progress bars (they are shown only on a terminal anyway)

    def __post_init__(self):
        check_small_run(self, ("canvases", "epochs", "batch_size", "width"), images="canvases")
        if not (0 < self.lr < 1 and self.weight_decay >= 0 and 0 <= self.label_smoothing < 1 and self.workers >= 0
                and 0 <= self.augment <= 3 and 0 <= self.low_res <= 1 and 0 <= self.pointed_four <= 1
                and 0 <= self.proportions <= 2 and 0 <= self.letters < 1 and 0 <= self.letter_runs <= 1
                and 0 <= self.signs < 1 and self.letters + self.signs < 1):
            raise SegappError("--lr must lie in (0, 1), --weight-decay >= 0, --label-smoothing in [0, 1), "
                              "--workers >= 0, --augment in [0, 3], --low-res and --pointed-four in [0, 1], "
                              "--proportions in [0, 2], --letters and --signs in [0, 1) (together under 1), "
                              "--letter-runs in [0, 1]")
        bad = sorted({c for c in self.letter_chars if c.isdigit() or not c.isprintable() or c.isspace()})
        if not self.letter_chars or bad:
            raise SegappError(f"--letter-chars {self.letter_chars!r}: give letters and signs, no digits or spaces "
                              f"(default {READER_GLYPHS!r})")
        if self.signs and not self.letters:
            raise SegappError("--signs needs --letters above 0: the sign is the reader's twelfth class, after "
                              "\"a letter\" (e.g. --letters 0.2 --signs 0.15)")
        bad = sorted({c for c in self.sign_chars if c.isalnum() or not c.isprintable() or c.isspace()
                      or c in self.letter_chars})
        if self.signs and (not self.sign_chars or bad):
            raise SegappError(f"--sign-chars {self.sign_chars!r}: give signs only, none of --letter-chars "
                              f"{''.join(bad)!r}; leave them out of --letter-chars (default {SIGN_GLYPHS!r})")
        try:  # the files themselves, so args.json records exactly which typefaces the letters came from
            object.__setattr__(self, "letter_fonts", font_files(tuple(self.letter_fonts)))
        except ValueError as e:
            raise SegappError(f"--letter-fonts {e}") from None


def digit_crops(image: np.ndarray, label: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """(H, W) float image and its label map -> (canonical crop, class) for each whole digit, and each whole letter
    (:data:`LETTER` strokes, class :data:`~segapp.reader.NOT_DIGIT`): a label part cut by the canvas edge, too small,
    or wider than a digit (two touching digits of one class) is left out; letters may be as wide as two (an m, a W,
    two touching letters: the net colours such a run as one digit)."""
    out = []
    H, W = label.shape
    for c in np.unique(label[(label < NUM_DIGITS) | (label == LETTER) | (label == SIGN_LABEL)]).tolist():
        wide, low = (2.5, MIN_LETTER_HEIGHT) if c in (LETTER, SIGN_LABEL) else (1.2, MIN_CROP_HEIGHT)
        n, parts, stats, _ = cv2.connectedComponentsWithStats((label == c).view(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = stats[k].tolist()
            if area < MIN_CROP_AREA or h < low or x == 0 or y == 0 or x + w >= W or y + h >= H \
                    or w > wide * h + 4:
                continue
            window = np.s_[y - 1 : y + h + 1, x - 1 : x + w + 1]  # 1 px around the box: room for the faint edge
            v = own_strokes(image[window], parts[window] == k)
            if v is not None:
                out.append((v, {LETTER: NOT_DIGIT, SIGN_LABEL: SIGN}.get(c, int(c))))
    return out


class CanvasCrops(Dataset):
    """Canvas ``i`` of the generator, seeded by (seed, i) -> its digits' crops (uint8 (n, 28, 28), labels (n,))."""

    def __init__(self, n: int, seed: int, recipe: WildConfig = WildConfig()):
        self.n, self.seed, self.recipe = n, seed, recipe
        self.digits, self.labels = load_mnist("train")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image, label = wild_sample(np.random.default_rng([self.seed, 30, i]), self.digits, self.labels, self.recipe)
        crops = digit_crops(image, label)
        x = np.array([np.round(v * 255) for v, _ in crops], np.uint8).reshape(-1, 28, 28)
        return x, np.array([c for _, c in crops], np.int64)


def _cat(batch):
    return np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])


def make_crops(n: int, seed: int, workers: int, recipe: WildConfig = WildConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The crops of ``n`` generated canvases, in canvas order (the same for any ``workers``)."""
    loader = DataLoader(CanvasCrops(n, seed, recipe), batch_size=64, num_workers=workers, collate_fn=_cat)
    xs, ys = zip(*loader)
    return np.concatenate(xs), np.concatenate(ys)


def _batches(x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator, augment: float = 0.0,
             low_res: float = 0.0, proportions: float = 0.0):
    """Shuffled full batches of crops, each shifted by up to 2 px (one shift per batch; MNIST centring is exact only
    to the pixel, and a stroke's centre of mass moves with its pen), and with ``augment`` > 0 each crop varied that
    much (:func:`vary`)."""
    order = torch.randperm(len(x), generator=generator)
    for k in range(len(x) // size):
        idx = order[k * size : (k + 1) * size]
        dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
        batch = x[idx].float().div_(255.0)[:, None]
        batch = vary(batch, generator, augment, low_res, proportions) if augment > 0 else batch
        yield torch.roll(batch, (dy, dx), (2, 3)), y[idx]


def _proportions(u: torch.Tensor, split: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Output coordinates ``u`` (N, H, W) along one axis -> where to sample them so that the part of the digit before
    ``split`` (N,) takes ``ratio`` (N,) times its share of the digit's extent (:data:`SPAN`) and the part after it
    the rest: a 9's loop over a shorter stem, a 4's small top over a long one. Linear on either side of the split."""
    lo, hi = -SPAN, SPAN
    before, after = (split - lo) * ratio, hi - split
    k = (hi - lo) / (before + after)  # the digit keeps its extent
    at = lo + before * k  # where the split lands in the output
    split, ratio, k, at = (t[:, None, None] for t in (split, ratio, k, at))
    return torch.where(u < at, lo + (u - lo) / (ratio * k), split + (u - at) / k)


def vary(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0, low_res: float = 0.0,
         proportions: float = 0.0) -> torch.Tensor:
    """(N, 1, 28, 28) crops, ink 1 -> each turned, sheared and stretched about the centre, its ink raised to a power
    and a share of them blurred, each at random: the crops are made once, and without this every pass showed the
    reader the same 321,096 pictures; other writers' digits are slanted, narrowed and blurred in ways the
    generator's hundred thousand canvases sample only thinly.

    With ``low_res`` > 0 that share of the crops is also averaged down to a few cells a side (:data:`CELLS`) and
    enlarged back (bicubic): a digit that survives only at low resolution (a coarse scan, a thumbnail, a form's
    block counts) comes back as a smooth blur whose loops fill in, and a 9 so blurred was read as a 3.

    With ``proportions`` > 0 each crop's parts are also resized against each other, once along each axis
    (:func:`_proportions`): a split point within the digit's middle half, the part above (left of) it 1/(1 +
    ``proportions``) to (1 + ``proportions``) times its share. Writers differ in proportions more than in slant:
    a small pointed top on a long stem, a big loop on a short tail.
    """
    n = len(x)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    a = strength  # scales every range below
    turn, shear = torch.deg2rad(uniform(-a * TURN, a * TURN)), uniform(-a * SHEAR, a * SHEAR)
    sx, sy = 1 + a * uniform(*STRETCH), 1 + a * uniform(*STRETCH)
    cos, sin = turn.cos(), turn.sin()
    theta = torch.zeros(n, 2, 3)  # maps each output pixel to where it is sampled from (normalised coordinates)
    theta[:, 0, 0], theta[:, 0, 1] = cos / sx, (shear * cos - sin) / sx
    theta[:, 1, 0], theta[:, 1, 1] = sin / sy, (shear * sin + cos) / sy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if proportions > 0:  # warp the output coordinates first, then the affine map (one resampling)
        base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
        warped = torch.stack([_proportions(base[..., k], uniform(-SPAN / 2, SPAN / 2),
                                           torch.exp(uniform(-1, 1) * np.log1p(proportions))) for k in (0, 1)], -1)
        grid = torch.einsum("nij,nhwj->nhwi", theta[:, :, :2], warped) + theta[:, None, None, :, 2]
    x = F.grid_sample(x, grid, align_corners=False).clamp_(0, 1)
    x = x.pow(torch.exp(uniform(-a, a) * np.log(GAMMA))[:, None, None, None])
    blur = torch.rand(n, generator=generator) < BLURRED
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        x[blur] = F.conv2d(x[blur], (k[:, None] * k[None])[None, None], padding=1)
    if low_res > 0:
        low = torch.rand(n, generator=generator) < low_res
        cells = torch.randint(CELLS[0], CELLS[1] + 1, (n,), generator=generator)
        for c in cells[low].unique().tolist():
            pick = low & (cells == c)
            small = F.adaptive_avg_pool2d(x[pick], c)  # each cell: the mean ink of its block
            up = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp_(0, 1)
            # inference normalises an image's ink to full strength; averaged thin strokes would stay grey
            x[pick] = (up / up.amax((2, 3), keepdim=True).clamp_min(1e-3)).clamp_(0, 1)
    return x


@torch.inference_mode()
def accuracy(reader: DigitReader, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of crops read right (reader in eval mode, batches of 1024)."""
    reader.eval()
    right = sum(int((reader(x[k : k + 1024].float().div(255.0)[:, None]).argmax(1) == y[k : k + 1024]).sum())
                for k in range(0, len(x), 1024))
    return right / max(len(x), 1)


def run(cfg: ReaderTrainConfig, argv: list[str] | None = None) -> dict:
    """Trains a reader per ``cfg`` into ``cfg.out`` (config.json + model.safetensors, args.json, metrics.json);
    returns the metrics."""
    out, progress, device, amp = start_small_run(cfg, argv)
    t0 = time.time()
    held = max(2, cfg.canvases // 20)
    recipe = WildConfig(pointed_four=cfg.pointed_four, letters=cfg.letters, letter_label=LETTER,
                        letter_chars=cfg.letter_chars, letter_fonts=cfg.letter_fonts,
                        letter_runs=cfg.letter_runs, signs=cfg.signs, sign_label=SIGN_LABEL,
                        sign_chars=cfg.sign_chars)
    x, y = make_crops(cfg.canvases, cfg.seed, cfg.workers, recipe)
    vx, vy = make_crops(held, cfg.seed + 1_000_003, cfg.workers, recipe)  # other canvases: no crop shared with training
    if len(x) < cfg.batch_size:
        raise SegappError(f"{cfg.canvases} canvases gave {len(x)} crops, fewer than one batch of {cfg.batch_size}; "
                          "raise --canvases or lower --batch-size")
    x, y, vx, vy = (torch.from_numpy(a) for a in (x, y, vx, vy))
    print(f"{len(x):,} training crops, {len(vx):,} held out ({time.time() - t0:.0f} s)", file=sys.stderr)
    classes = NUM_DIGITS + (cfg.letters > 0) + (cfg.signs > 0)
    reader = DigitReader(ReaderConfig(width=cfg.width, classes=classes)).to(device)
    opt = torch.optim.AdamW(reader.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * (len(x) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(cfg.seed)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)

    history = []
    for epoch in range(cfg.epochs):
        batches = _batches(x, y, cfg.batch_size, generator, cfg.augment, cfg.low_res, cfg.proportions)
        mean, n = train_one_epoch(reader, batches, loss, opt, sched, device, amp,
                                  desc=f"epoch {epoch + 1}/{cfg.epochs}" if progress else None,
                                  memory_format=torch.contiguous_format)
        acc = accuracy(reader, vx.to(device), vy.to(device))
        history.append({"epoch": epoch + 1, "loss": round(mean, 4), "held_accuracy": round(acc, 4)})
        print(f"epoch {epoch + 1}: loss {mean:.4f}, held-out crops read {acc:.2%}", file=sys.stderr)
    reader = reader.cpu().eval()
    metrics = {"held_accuracy": history[-1]["held_accuracy"], "train_crops": len(x), "held_crops": len(vx),
               "seconds": round(time.time() - t0), "history": history}
    save_reader(reader, out, extra={"trained_with": argv, "held_accuracy": metrics["held_accuracy"]})
    write_atomic(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics

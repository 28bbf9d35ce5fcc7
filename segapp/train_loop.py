"""The training engine: loss, optimiser, schedule, the seeded batches of an epoch, and one epoch of training.

`segapp train` and benchmarks/bench.py both train with exactly these, so a benchmark's figures are those of the
shipped recipe. The validation step beside :func:`train_one_epoch` is :func:`segapp.evaluate.evaluate`
(torchvision's ``train_one_epoch`` / ``evaluate`` pair): ``evaluate(model, images, masks, batch_size, device, amp)
-> (metrics, confusion, loss)``. Kept apart from the job (:mod:`segapp.train`), which decides what to train and
writes the run's files, so the numerics can be read without the bookkeeping.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

from . import distributed
from .classes import VOID, SegappError
from .distill import Teacher
from .runtime import amp_enabled, autocast, pick_device, progress_bar
from .safeio import write_atomic
from .train_config import TrainConfig


class TrainingDiverged(SegappError):
    """The loss became NaN or infinite: training stops before the broken step reaches the weights."""


def build_loss(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy + ``cfg.dice_weight`` x multiclass Dice on logits; pixels marked VOID (255) count in
    neither. Under torchrun with several processes: the same loss of the whole global batch
    (:func:`global_batch_loss`)."""
    if distributed.world() > 1:
        return global_batch_loss(cfg, distributed.all_reduce_sum)
    ce = torch.nn.CrossEntropyLoss(ignore_index=VOID)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=VOID)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ce(logits, y) + cfg.dice_weight * dice(logits, y)

    return loss


def global_batch_loss(cfg: TrainConfig, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
                      ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`build_loss`'s loss over a batch split across processes, from sums that ``reduce`` adds up over them
    (:func:`segapp.distributed.all_reduce_sum`, differentiable; the identity in one process, where it equals
    build_loss's to float rounding). Averaging each rank's own loss would not do: cross-entropy is a mean over the
    valid pixels of the whole batch (void pixels are not spread evenly), and smp's Dice is per class over the whole
    batch, not a mean over images. Every rank gets the global loss; its backward sends each rank world() x its
    images' share of the gradient, which DDP's averaging turns into the one-process gradient."""
    from torch.linalg import vector_norm

    eps = 1e-7  # smp.losses.DiceLoss's default (smooth 0)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = logits.shape[1]
        valid = y != VOID
        target = torch.where(valid, y, 0)
        logp = logits.log_softmax(1)
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1) * valid
        prob = (logp.exp() * valid.unsqueeze(1)).flatten(2)  # N, C, HW: as smp's DiceLoss (from logits) sees them
        onehot = (torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2) * valid.unsqueeze(1)).flatten(2)
        onehot = onehot.type_as(prob)
        sums = reduce(torch.cat([nll.sum().view(1), valid.sum().view(1).type_as(prob), prob.sum((0, 2)),
                                 onehot.sum((0, 2)), vector_norm(prob - onehot, ord=1, dim=(0, 2))]))
        ce = sums[0] / sums[1]
        p_sum, t_sum, difference = sums[2 : 2 + c], sums[2 + c : 2 + 2 * c], sums[2 + 2 * c :]
        inter = (p_sum + t_sum - difference) / 2  # smp's soft_tversky_score with alpha = beta = 0.5
        score = inter / (inter + 0.5 * (p_sum - inter) + 0.5 * (t_sum - inter)).clamp_min(eps)
        dice = ((1.0 - score) * (t_sum > 0)).mean()  # classes absent from the batch add nothing, as in smp
        return ce + cfg.dice_weight * dice

    return loss


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW at ``cfg.lr`` (resolved) with ``cfg.weight_decay``."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """One-cycle schedule peaking at ``cfg.lr`` over the whole run (``cfg.epochs`` x ``steps_per_epoch`` steps)."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)


def seed_epoch(train_set, seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seeds everything epoch ``epoch`` draws from (the dataset's fresh compositions, its augmentation and the
    shuffling order, returned as a generator) from (seed, epoch) alone, so a resumed run is the uninterrupted one.
    ``rank`` (torchrun): the augmentation stream of that process; rank 0's is the one-process stream."""
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    if getattr(train_set, "augment", None) is not None:
        train_set.augment.set_random_seed(seed * 100_003 + epoch + rank * 10**15)
    other = getattr(train_set, "other", None)  # --data with --mix-recipe: the recipe's share has its own augmentation
    if getattr(other, "augment", None) is not None:
        other.augment.set_random_seed(seed * 100_003 + epoch + rank * 10**15 + 7 * 10**13)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _one_opencv_thread() -> None:
    """OpenCV to one thread in this process, before the DataLoader forks its workers: they inherit it, as torch's
    workers run on one thread of their own. Otherwise each worker has a pool of one thread per core (16 workers x 16
    threads on a 16-core host: half the images per second there). Set in the parent, not in each worker: a worker
    forked after the parent ran OpenCV's pool hangs in ``cv2.setNumThreads`` (the pool's threads did not fork)."""
    import cv2

    cv2.setNumThreads(1)


def epoch_loader(train_set, cfg: TrainConfig, epoch: int) -> DataLoader:
    """The seeded, shuffled batches of epoch ``epoch`` (full batches only). Under torchrun each process gets its
    ``batch_size / world`` share of every global batch of the same shuffle (see
    :func:`segapp.distributed.shard_indices`)."""
    generator = seed_epoch(train_set, cfg.seed, epoch, distributed.rank())
    if cfg.workers:
        _one_opencv_thread()
    if distributed.world() > 1:
        sampler = distributed.ShardSampler(len(train_set), generator, cfg.batch_size)
        return DataLoader(train_set, distributed.per_rank_batch(cfg.batch_size), sampler=sampler, drop_last=True,
                          generator=generator, num_workers=cfg.workers, persistent_workers=False)
    return DataLoader(train_set, cfg.batch_size, shuffle=True, drop_last=True, generator=generator,
                      num_workers=cfg.workers, persistent_workers=False)


def train_one_epoch(model: torch.nn.Module, loader, loss_fn, opt, sched, device: torch.device, amp: bool,
                    desc: str | None = None, teacher: Teacher | None = None,
                    memory_format: torch.memory_format = torch.channels_last) -> tuple[float, int]:
    """One pass over ``loader``: bfloat16 autocast where ``amp`` (see :func:`segapp.runtime.amp_enabled`), loss in
    float32, one optimiser and schedule step per batch. ``desc``: show a progress bar. ``teacher``: add its
    distillation loss (:mod:`segapp.distill`). ``memory_format``: of the inputs, as the model's
    (:func:`segapp.runtime.training_memory_format`). A loss that is not finite stops the run (TrainingDiverged)
    before the optimiser step, so no NaN reaches the weights, the checkpoint or the saved best weights.
    Returns (mean loss, images)."""
    model.train()
    loss_sum, n = 0.0, 0
    batches = progress_bar(loader, desc=desc, unit="batch", mininterval=2, file=sys.stderr) if desc else loader
    for x, y in batches:
        x, y = x.to(device).contiguous(memory_format=memory_format), y.to(device)
        with autocast(device, amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if teacher is not None:
            loss = loss + teacher.loss(x, logits)
        if not torch.isfinite(loss.detach()):
            raise TrainingDiverged(f"the training loss became {loss.item()} after {n} images of this epoch; the "
                                   "weights before this batch are kept; lower --lr, or try --amp off")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum, n = loss_sum + loss.item() * len(x), n + len(x)
        if desc:
            batches.set_postfix(loss=f"{loss_sum / n:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}", refresh=False)
    return loss_sum / max(n, 1), n


def check_small_run(cfg, counts: tuple[str, ...], shares: tuple[str, ...] = (), images: str | None = None) -> None:
    """The checks a small model's training config shares (`segapp train-reader`, `train-context`, `train-ink`): each of
    ``counts`` a whole number >= 1, each of ``shares`` in [0, 1], and ``images`` (a field) 40 or more, as 5% are held
    out to score the model. Raises :class:`SegappError` naming the flag."""
    for name in counts:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SegappError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")
    for name in shares:
        if not 0 <= getattr(cfg, name) <= 1:
            raise SegappError(f"--{name.replace('_', '-')} must lie in [0, 1], got {getattr(cfg, name)!r}")
    if images is not None and getattr(cfg, images) < 40:
        raise SegappError(f"--{images} {getattr(cfg, images)}: use 40 or more (5% are held out to score the model)")


def fit_small(model: torch.nn.Module, cfg, batches: Callable, steps_per_epoch: int, held: Callable[[], dict],
              describe: Callable[[dict], str], device: torch.device, amp: bool, progress: bool) -> list[dict]:
    """The epochs of a small model's run (`segapp train-context`, `train-ink`): AdamW at ``cfg.weight_decay``, a
    one-cycle schedule peaking at ``cfg.lr``, binary cross-entropy on logits; ``batches(generator)`` gives one
    epoch's batches (seeded by ``cfg.seed``), ``held()`` the held-out scores after each, ``describe`` them in the
    epoch's line on stderr. Returns each epoch's loss and scores."""
    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1)
    generator = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        mean, _ = train_one_epoch(model, batches(generator), torch.nn.functional.binary_cross_entropy_with_logits,
                                  opt, sched, device, amp, desc=f"epoch {epoch + 1}/{cfg.epochs}" if progress else None,
                                  memory_format=torch.contiguous_format)
        scores = held()
        history.append({"epoch": epoch + 1, "loss": round(mean, 4), **scores})
        print(f"epoch {epoch + 1}: loss {mean:.4f}, {describe(scores)}", file=sys.stderr)
    return history


def start_small_run(cfg, argv: list[str] | None) -> tuple[Path, bool, torch.device, bool]:
    """The opening of a small model's training run (`segapp train-reader`, `segapp train-context`): seeds torch,
    makes ``cfg.out`` with the resolved config and ``argv`` in ``args.json``; returns (out folder, whether to show
    progress bars, device, bfloat16 autocast)."""
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "args.json", lambda p: Path(p).write_text(json.dumps({**asdict(cfg), "argv": argv}, indent=2)))
    return out, not cfg.quiet and sys.stderr.isatty(), device, amp_enabled(cfg.amp, device)

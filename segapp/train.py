"""`segapp train`: M2NIST (or a Kaggle-layout pair) -> trained weights, log, curve and model card.

A run is described by one frozen :class:`~segapp.train_config.TrainConfig` (the CLI maps its flags onto it;
``asdict(cfg)`` is what ``args.json`` and ``last.pt`` record, and what ``--resume`` rebuilds the run from).
This module is the job, step by step (:func:`run`); the engine it trains with is :mod:`segapp.train_loop`, the
resume rules :mod:`segapp.train_resume`, the files for people :mod:`segapp.train_report`.

Output folder (``--out``, default ``runs/train``):
  config.json + model.safetensors  best epoch by val mean IoU over digits (what every command loads)
  last.pt                          full state for ``--resume`` (model, optimiser, schedule, epoch, RNG)
  log.csv, curve.png               one row per finished epoch; rewritten whole, atomically
  args.json, metrics.json, MODEL_CARD.md
Every file is written to a temp name and renamed, so killing the run at any moment leaves the
previous complete version of each file behind. An --out that already holds any of these files is
refused unless --resume is given: a run is never replaced by accident.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .blend import blend_run
from .classes import SegappError
from .distill import Teacher, grows, resize
from .evaluate import evaluate  # the engine's validation step, after each epoch
from .m2nist import make_split
from .model import DilatedNet, NetConfig, load_pretrained, save_pretrained, weights_fingerprint
from .runtime import amp_enabled, pick_device, training_memory_format
from .safeio import file_id, sweep_temps, write_atomic
from .train_config import HOW_ARGS, RUN_ARGS, TrainConfig, blends, build_data, check_args, check_data, flag
from .train_loop import build_loss, build_optimizer, build_scheduler, epoch_loader, train_one_epoch
from .train_report import finish, write_json, write_log
from .train_resume import check_out, check_resume_flags, load_resumable, run_complete


@dataclass
class _Fit:
    """What the epoch loop works on, handed from one step of :func:`run` to the next: the net and where it runs,
    the data, the optimiser state (set by :func:`_restore`) and how far the run has got.

    Mutable on purpose: the loop appends to ``history`` and raises ``best`` epoch by epoch.
    """

    model: DilatedNet
    device: torch.device
    amp: bool
    memory_format: torch.memory_format
    teacher: Teacher | None
    train_set: torch.utils.data.Dataset
    val_images: np.ndarray
    val_masks: np.ndarray
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)
    best: float = -1.0  # best val mean IoU over digits so far
    start: int = 0  # the last finished epoch


def run(cfg: TrainConfig, argv: list[str] | None = None, given=(), progress: bool | None = None) -> dict:
    """Trains per ``cfg``; returns the final metrics. ``argv`` (the command's arguments after ``segapp``) goes
    into the model card; on ``cfg.resume`` the run's own config comes from its checkpoint (or args.json), and a field
    in ``given`` (those set on the command line: field -> flag) that differs from it is refused; a complete run is
    left as it is. ``progress``: progress bars on stderr (None: when stderr is a terminal).

    The steps, in order: start or resume -> build the model -> load the teacher -> data -> restore -> fit -> finish.
    Each step that can change the config returns the new one, so what ``args.json`` records is the config after
    all of them.
    """
    out = Path(cfg.out)
    cfg = cfg.resolved()
    progress = sys.stderr.isatty() if progress is None else progress
    check_args(cfg, names=("workers",) if cfg.resume else None)  # nothing is written before these checks
    device = distributed.init(pick_device(cfg.device))  # under torchrun: joins the run's processes (else a no-op)
    progress = progress and distributed.is_main()  # rank 0 alone prints, validates and writes --out
    cfg, ckpt, complete = _start_or_resume(cfg, out, given)
    if complete:
        return distributed.on_main(lambda: json.loads((out / "metrics.json").read_text()))
    _clean_and_seed(cfg, out)
    cfg, model, amp, memory_format = _build_model(cfg, ckpt, given, device)
    cfg, teacher = _load_teacher(cfg, ckpt, device, amp)
    train_set, (val_images, val_masks) = build_data(cfg)
    check_data(cfg, train_set)
    distributed.per_rank_batch(cfg.batch_size)  # under torchrun: refuses a global batch that does not split evenly
    fit = _Fit(model, device, amp, memory_format, teacher, train_set, val_images, val_masks)
    _restore(fit, cfg, ckpt, out)
    args_dict = asdict(cfg)
    _announce(fit, cfg, out, args_dict)
    _fit(fit, cfg, out, args_dict, progress)
    return _blend_and_finish(fit, cfg, out, argv, progress)


def _start_or_resume(cfg: TrainConfig, out: Path, given) -> tuple[TrainConfig, dict | None, bool]:
    """Checks ``out`` and, on ``--resume``, swaps in the run's own config (from its checkpoint or args.json).

    Returns (config, checkpoint or None, whether the run is already complete). A run-defining flag in ``given``
    that differs from the recorded run is refused here, before anything is written.
    """
    distributed.on_main(check_out, out, cfg.resume)
    if not cfg.resume:
        return cfg, None, False
    ckpt, run_args = distributed.on_main(load_resumable, out)  # rank 0's last.pt, sent to every rank
    asked, cfg = cfg, TrainConfig.from_dict(run_args, **{k: getattr(cfg, k) for k in HOW_ARGS})
    check_args(cfg, names=RUN_ARGS, source=f" (in {out / 'last.pt'})")
    complete = distributed.on_main(run_complete, out, cfg, ckpt)
    check_resume_flags(asked, cfg, given if isinstance(given, dict) else {k: flag(k) for k in given}, out, complete)
    if complete and distributed.is_main():
        print(f"run complete ({cfg.epochs} epochs); nothing to do; to train longer start a new run with "
              f"--init {out}", file=sys.stderr)
    return cfg, ckpt, complete


def _clean_and_seed(cfg: TrainConfig, out: Path) -> None:
    """Removes a killed run's temp files from ``out`` (never the user's Kaggle pair) and seeds torch and numpy, so
    the net's initial weights depend on ``cfg.seed`` alone."""
    kaggle_files = [Path(cfg.kaggle) / n for n in ("combined.npy", "segmented.npy")] if cfg.kaggle else []
    if distributed.is_main():
        sweep_temps([out], keep={fid for p in kaggle_files if (fid := file_id(p))})  # a killed run's temp files only
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)


def _build_model(cfg: TrainConfig, ckpt: dict | None, given, device: torch.device
                 ) -> tuple[TrainConfig, DilatedNet, bool, torch.memory_format]:
    """The net to train, on ``device`` in its training memory format.

    Fine-tuning (``cfg.init``, no checkpoint yet) starts from the parent's weights and architecture, trimmed or
    grown to ``--widths`` only when those were asked for; otherwise a fresh net (a resumed run's weights are put
    back by :func:`_restore`). Returns (config with the widths and parent fingerprint used, net, bf16 autocast on,
    memory format).
    """
    if cfg.init and ckpt is None:  # fine-tuning: start from trained weights (their architecture)
        parent = Path(cfg.init)
        model = load_pretrained(parent)
        if tuple(cfg.widths) != tuple(model.config.widths) and ("widths" in given or cfg.resume):
            if blends(cfg) and not cfg.blend_with and not grows(model.config.widths, cfg.widths):
                raise SegappError(f"--blend {cfg.blend} with a net trimmed to --widths "
                                  f"{','.join(map(str, cfg.widths))}: weights can only be averaged between nets of "
                                  "the same widths; use --blend 1 (a trimmed net is distilled, not blended)")
            try:  # leaner: the parent's strongest channels; wider: the parent plus silent new channels
                model = resize(model, tuple(cfg.widths))
            except ValueError as e:
                raise SegappError(str(e)) from None
        cfg = replace(cfg, widths=tuple(model.config.widths), init_sha256=weights_fingerprint(parent))
        if cfg.blend_with:  # checked now, not after hours of training: blending needs the same widths
            other = load_pretrained(cfg.blend_with).config.widths
            if tuple(other) != tuple(cfg.widths):
                raise SegappError(f"--blend-with {cfg.blend_with} has widths {list(other)}, the run "
                                  f"{list(cfg.widths)}; weights can only be averaged layer by layer between nets of "
                                  "the same widths; blend with an ancestor of --init")
            cfg = replace(cfg, blend_with_sha256=weights_fingerprint(cfg.blend_with))
    else:
        model = DilatedNet(NetConfig(widths=tuple(cfg.widths)))
    amp = amp_enabled(cfg.amp, device)
    memory_format = training_memory_format(cfg.widths, amp, device)
    return cfg, model.to(device).to(memory_format=memory_format), amp, memory_format


def _load_teacher(cfg: TrainConfig, ckpt: dict | None, device: torch.device, amp: bool
                  ) -> tuple[TrainConfig, Teacher | None]:
    """The distillation teacher of ``cfg.teacher`` (None without one), and the config with its fingerprint.

    A resumed run refuses a teacher whose weights changed since the run began: the run would no longer be the
    one that was started.
    """
    if not cfg.teacher:
        return cfg, None
    teacher = Teacher.load(cfg.teacher, device, amp, cfg.distill_weight, cfg.distill_temperature)
    fingerprint_now = weights_fingerprint(Path(cfg.teacher))
    if ckpt is not None and cfg.teacher_sha256 and fingerprint_now != cfg.teacher_sha256:
        raise SegappError(f"--resume: the teacher {cfg.teacher} has changed since the run began (fingerprint "
                          f"{fingerprint_now}, was {cfg.teacher_sha256}); the run cannot go on as it was started; "
                          "start a new run in another --out")
    return replace(cfg, teacher_sha256=fingerprint_now), teacher


def _restore(fit: _Fit, cfg: TrainConfig, ckpt: dict | None, out: Path) -> None:
    """Builds the optimiser, schedule and loss into ``fit``; with a checkpoint, puts back its weights, optimiser and
    schedule state, torch RNG, history and epoch, so the resumed run continues the uninterrupted one."""
    fit.opt = build_optimizer(fit.model, cfg)
    fit.sched = build_scheduler(fit.opt, cfg, len(fit.train_set) // cfg.batch_size)
    fit.loss_fn = build_loss(cfg)
    if ckpt is None:
        return
    fit.model.load_state_dict(ckpt["model"])
    fit.opt.load_state_dict(ckpt["optimizer"])
    fit.sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    fit.history, fit.best, fit.start = ckpt["history"], ckpt["best"], ckpt["epoch"]
    if distributed.is_main():
        print(f"resuming {out / 'last.pt'} after epoch {fit.start}/{cfg.epochs}", file=sys.stderr)


def _announce(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict) -> None:
    """Rank 0: records the resolved config in args.json (what ``--resume`` rebuilds the run from) and prints one
    line describing the model, device and data."""
    if not distributed.is_main():
        return
    write_json(out / "args.json", args_dict)
    ddp = (f", DDP over {distributed.world()} processes ({cfg.batch_size // distributed.world()} images each per "
           "batch)" if distributed.world() > 1 else "")
    print(f"model: {fit.model.num_params():,} params, receptive field {fit.model.receptive_field()} px, "
          f"device {fit.device} {'bf16' if fit.amp else 'fp32'}, "
          f"{len(fit.train_set)} train / {len(fit.val_images)} val images per epoch{ddp}", file=sys.stderr)


def _fit(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict, progress: bool) -> None:
    """Trains the epochs after ``fit.start``. Every rank trains; rank 0 alone validates and writes (the others
    wait at a barrier), since DDP keeps every rank's weights equal to its own."""
    net = distributed.wrap(fit.model, fit.device)  # DDP under torchrun; fit.model stays the net to validate and save
    for epoch in range(fit.start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss, n = train_one_epoch(net, epoch_loader(fit.train_set, cfg, epoch), fit.loss_fn, fit.opt, fit.sched,
                                        fit.device, fit.amp, desc=f"epoch {epoch}/{cfg.epochs}" if progress else None,
                                        teacher=fit.teacher, memory_format=fit.memory_format)
        train_seconds = time.perf_counter() - t0
        if distributed.is_main():
            _end_epoch(fit, cfg, out, args_dict, progress, epoch, t0, train_loss,
                       n * distributed.world() / train_seconds)  # all ranks' images
        distributed.barrier()  # the other ranks wait here for rank 0's files


def _end_epoch(fit: _Fit, cfg: TrainConfig, out: Path, args_dict: dict, progress: bool, epoch: int, t0: float,
               train_loss: float, images_per_s: float) -> None:
    """Rank 0 after each epoch: validates, saves the weights when they are the best so far, then writes last.pt and
    the log (each atomically, so a kill leaves the previous epoch's files whole) and prints one line."""
    metrics, _, val_loss = evaluate(fit.model, fit.val_images, fit.val_masks, 128, fit.device, fit.amp,
                                    desc=f"val {epoch}/{cfg.epochs}" if progress else None)
    row = {
        "epoch": epoch, "lr": fit.sched.get_last_lr()[0], "train_loss": train_loss, "val_loss": val_loss,
        "val_miou": metrics["miou"], "val_miou_digits": metrics["miou_digits"],
        "val_pixel_accuracy": metrics["pixel_accuracy"], "seconds": time.perf_counter() - t0,
        "train_images_per_s": images_per_s,
    }
    fit.history.append(row)
    improved = metrics["miou_digits"] > fit.best
    if improved:
        fit.best = metrics["miou_digits"]
        save_pretrained(fit.model, out, {"epoch": epoch, "val_miou_digits": fit.best})
    state = {
        "config": fit.model.config.to_dict(), "model": fit.model.state_dict(), "optimizer": fit.opt.state_dict(),
        "scheduler": fit.sched.state_dict(), "epoch": epoch, "best": fit.best, "history": fit.history,
        "rng": {"torch": torch.get_rng_state()}, "args": args_dict,
    }
    write_atomic(out / "last.pt", lambda p, state=state: torch.save(state, p), fsync=True)
    write_log(out, fit.history)
    print(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f}  val mIoU digits "
          f"{row['val_miou_digits']:.4f}  11-class {row['val_miou']:.4f}  {row['seconds']:.0f}s"
          f"{'  (best, saved)' if improved else ''}", file=sys.stderr)


def _blend_and_finish(fit: _Fit, cfg: TrainConfig, out: Path, argv: list[str] | None, progress: bool) -> dict:
    """Ends the run: a fine-tuning run that :func:`blends` mixes its weights with the parent's (rank 0), then rank 0
    scores the result on the test split (:func:`finish`); the metrics go to every rank."""
    blended = None
    if blends(cfg):  # keep what the parent knew: blend with its weights (segapp.blend), rank 0 alone
        keep = make_split("val", n=cfg.val_size)  # the recipe's val split: what the parent knew; never test
        blended = distributed.on_main(blend_run, out, cfg.blend_with or cfg.init, cfg.blend, cfg.forget_tolerance, keep,
                                      (fit.val_images, fit.val_masks), fit.device, fit.amp)
    metrics = distributed.on_main(finish, cfg, out, fit.history, fit.device, argv, progress, blended)  # rank 0 tests
    distributed.cleanup()
    return metrics



"""Architecture benchmark: dilated vs strided vs large-kernel vs U-Net under one data/loss/optimiser/budget.

    python -m benchmarks.bench [--quick] [--threads 2] [--out runs/bench]     (docs/benchmarks.md)

Every architecture (see :mod:`benchmarks.baselines`) is trained with the recipe of `segapp train`
(fresh M2NIST compositions each epoch + albumentations, CE + Dice, AdamW, one-cycle schedule,
batch 32, bfloat16 autocast, channels_last; read from that command's defaults so the two cannot
drift) for the same number of epochs and images, once per seed, then scored on the test split
with its final weights. Files in ``--out``:

  results.jsonl   one JSON line per finished (architecture, seed, budget) run, appended the moment
                  it finishes; a re-run skips every run already in it, so an interrupted sweep loses
                  nothing but the run in progress
  results.csv     the same rows as a table (rewritten from results.jsonl)
  throughput.json CPU inference images/s at batch 64, every architecture interleaved in one process
  summary.json, summary.csv, table.md, bench.png   mean +- std over seeds and the plots
Each row records the machine, host, threads and time that produced it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks.baselines import ARCHS, build, count_macs, describe, measure_throughput, num_params, receptive_field
from segapp.safeio import write_atomic
from segapp.train_report import write_csv, write_json

PROG = "python -m benchmarks.bench"
FULL = {"epochs": 3, "train_size": 3000, "test_size": 1000, "seeds": "0,1,2", "repeats": 9}
QUICK = {"epochs": 2, "train_size": 256, "test_size": 200, "seeds": "0", "repeats": 3}
CSV_FIELDS = ("key", "arch", "seed", "epochs", "train_size", "test_size", "width", "params", "macs", "rf",
              "miou_digits", "miou", "pixel_accuracy", "final_train_loss", "train_seconds", "train_images_per_s",
              "eval_seconds", "threads", "machine", "host", "finished_utc")


def recipe() -> dict:
    """The optimisation settings of `segapp train`: its defaults, from ``segapp.train_config.TrainConfig``."""
    from segapp.train_config import TrainConfig

    cfg = TrainConfig().resolved()
    return {k: getattr(cfg, k) for k in ("batch_size", "lr", "weight_decay", "dice_weight", "amp", "augment")}


def run_key(arch: str, seed: int, a: argparse.Namespace) -> str:
    """Identity of one run: a re-run with the same key is skipped, any budget change makes a new one."""
    return f"{arch}|seed={seed}|epochs={a.epochs}|train={a.train_size}|test={a.test_size}|width={a.width}"


def machine_fields() -> dict:
    """Which machine, host, thread count and time produced a result."""
    from segapp.runtime import machine

    return {"threads": torch.get_num_threads(), "machine": machine(), "host": platform.node(),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def train_model(model: torch.nn.Module, seed: int, epochs: int, train_size: int, device: torch.device,
                log=None) -> float:
    """Trains ``model`` in place with the engine and recipe of `segapp train` (``segapp.train_loop``: its loss,
    optimiser, schedule, per-epoch seeding and training step, ``TrainConfig()``'s settings) on fresh M2NIST-recipe
    compositions; returns the last epoch's mean training loss."""
    from segapp.datasets import FreshM2NIST, train_augment
    from segapp.runtime import amp_enabled
    from segapp.train_config import TrainConfig
    from segapp.train_loop import build_loss, build_optimizer, build_scheduler, epoch_loader, train_one_epoch

    cfg = replace(TrainConfig(), epochs=epochs, train_size=train_size, seed=seed).resolved()
    train_set = FreshM2NIST(train_size, seed, train_augment() if cfg.augment else None)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, len(train_set) // cfg.batch_size)
    loss_fn, amp, loss = build_loss(cfg), amp_enabled(cfg.amp, device), 0.0
    for epoch in range(1, epochs + 1):
        loss, _ = train_one_epoch(model, epoch_loader(train_set, cfg, epoch), loss_fn, opt, sched, device, amp)
        if log:
            log(f"  epoch {epoch}/{epochs}: train loss {loss:.4f}")
    return loss


def bench_one(arch: str, seed: int, a: argparse.Namespace, test: tuple, log) -> dict:
    """Builds, trains and scores one (architecture, seed); returns its results row."""
    from segapp.evaluate import evaluate
    from segapp.runtime import amp_enabled, pick_device

    r, device = recipe(), pick_device(a.device)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = build(arch, a.width)
    params, macs, rf = num_params(model), count_macs(model), receptive_field(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    loss = train_model(model, seed, a.epochs, a.train_size, device, log)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, _, _ = evaluate(model, *test, 128, device, amp_enabled(r["amp"], device))
    eval_s = time.perf_counter() - t0
    seen = a.epochs * (a.train_size // r["batch_size"]) * r["batch_size"]
    return {"key": run_key(arch, seed, a), "arch": arch, "seed": seed, "epochs": a.epochs,
            "train_size": a.train_size, "test_size": len(test[0]), "width": a.width, "params": params,
            "macs": macs, "rf": rf, "miou_digits": metrics["miou_digits"], "miou": metrics["miou"],
            "pixel_accuracy": metrics["pixel_accuracy"], "final_train_loss": loss,
            "train_seconds": round(train_s, 1), "train_images_per_s": round(seen / train_s, 1),
            "eval_seconds": round(eval_s, 1), **machine_fields(), "recipe": r,
            "per_class_iou": metrics["per_class_iou"]}


def read_rows(out: Path) -> list[dict]:
    """Rows of ``results.jsonl``; a torn last line (killed mid-append) is ignored."""
    path, rows = out / "results.jsonl", []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def append_row(out: Path, row: dict) -> None:
    """Appends one finished run durably, then rewrites results.csv from all rows."""
    import os

    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    write_csv(out / "results.csv", read_rows(out), CSV_FIELDS)


def summarise(rows: list[dict], tp: dict | None, archs: list[str]) -> list[dict]:
    """Mean and sample std over seeds per architecture, joined with its throughput."""
    out = []
    for arch in archs:
        rs = [r for r in rows if r["arch"] == arch]
        if not rs:
            continue
        s = {"arch": arch, "what": describe(arch), "seeds": len(rs), "params": rs[0]["params"],
             "macs": rs[0]["macs"], "rf": rs[0]["rf"]}
        for k in ("miou_digits", "miou", "train_seconds"):
            vals = [r[k] for r in rs]
            s[k] = statistics.fmean(vals)
            s[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        for d in ("fp32", "bf16"):
            s[f"images_per_s_{d}"] = (tp or {}).get("results", {}).get(d, {}).get(arch, {}).get("images_per_s")
        out.append(s)
    return out


def table_md(summary: list[dict], tp: dict | None) -> str:
    """The markdown table docs/benchmarks.md shows."""
    lines = ["| arch | params | MMACs / 64x84 image | RF (px) | test mIoU digits | test mIoU 11 classes | "
             "train time (s) | img/s fp32 | img/s bf16 | seeds |", "|---|" + "---:|" * 9]
    for s in summary:
        rf = f"≥{s['rf']} (whole image)" if s["arch"].startswith("unet") else str(s["rf"])
        lines.append(f"| {s['arch']} | {s['params']:,} | {s['macs'] / 1e6:,.0f} | {rf} | "
                     f"{s['miou_digits']:.4f} ± {s['miou_digits_std']:.4f} | {s['miou']:.4f} ± {s['miou_std']:.4f} | "
                     f"{s['train_seconds']:.0f} ± {s['train_seconds_std']:.0f} | {s['images_per_s_fp32'] or '–'} | "
                     f"{s['images_per_s_bf16'] or '–'} | {s['seeds']} |")
    for d, ratios in (tp or {}).get("ratios", {}).items():
        lines.append(f"\nThroughput ratios ({d}, one process, median of {tp['repeats']}): "
                     + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path, title: str = "") -> None:
    """mIoU (digits) vs parameters and vs CPU throughput, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for i, s in enumerate(summary):
        y, err, c = s["miou_digits"], s["miou_digits_std"], f"C{i}"
        axes[0].errorbar(s["params"], y, yerr=err, fmt="o", color=c, capsize=4)
        axes[0].annotate(s["arch"], (s["params"], y), textcoords="offset points", xytext=(6, 6), color=c)
        for d, mfc in (("fp32", c), ("bf16", "none")):
            if s[f"images_per_s_{d}"]:
                axes[1].errorbar(s[f"images_per_s_{d}"], y, yerr=err, fmt="o", color=c, mfc=mfc, capsize=4)
        if s["images_per_s_fp32"]:
            axes[1].annotate(s["arch"], (s["images_per_s_fp32"], y), textcoords="offset points", xytext=(6, 6),
                             color=c)
    axes[0].set_xlabel("parameters (log scale)")
    axes[1].set_xlabel("CPU inference images/s, batch 64 (log; filled fp32, hollow bf16)")
    for ax in axes:
        ax.set_xscale("log"), ax.margins(x=0.15, y=0.12), ax.grid(alpha=0.3, which="both")
        ax.set_ylabel("test mIoU over digits (mean ± std)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=100, format="png"), fsync=True)
    plt.close(fig)


def report(out: Path, a: argparse.Namespace, archs: list[str], log) -> None:
    """Writes summary.json/.csv, table.md and bench.png from the rows of the current budget."""
    keys = {run_key(arch, s, a) for arch in archs for s in a.seed_list}
    rows = [r for r in read_rows(out) if r["key"] in keys]
    tp_path = out / "throughput.json"
    tp = json.loads(tp_path.read_text()) if tp_path.is_file() else None
    summary = summarise(rows, tp, archs)
    if not summary:
        log("no finished runs for this budget yet; nothing to summarise")
        return
    budget = {k: getattr(a, k) for k in ("epochs", "train_size", "test_size", "width")} | {"seeds": a.seed_list}
    doc = {"budget": budget, "recipe": recipe(), "summary": summary, "throughput": tp}
    write_json(out / "summary.json", doc)
    write_csv(out / "summary.csv", summary, list(summary[0]))
    table = table_md(summary, tp)
    write_atomic(out / "table.md", lambda p: Path(p).write_text(table), fsync=True)
    plot(summary, out / "bench.png", f"M2NIST test split ({a.test_size} images); every net trained {a.epochs} epochs x "
         f"{a.train_size} fresh images, recipe of `segapp train`; seeds {a.seeds}")
    log(table)


def run(a: argparse.Namespace) -> int:
    """Runs the benchmark for the parsed arguments ``a``; returns the exit status."""
    if a.quick:
        for k, v in QUICK.items():
            if getattr(a, k) == FULL[k]:  # flags given explicitly win over --quick
                setattr(a, k, v)
    a.seed_list = [int(s) for s in str(a.seeds).split(",") if s.strip()]
    archs = [x.strip() for x in a.archs.split(",") if x.strip()]
    unknown = [x for x in archs if x not in (*ARCHS, "unet-mobilenet")]
    if unknown or not archs or not a.seed_list:  # fail now, not an hour into the sweep
        print(f"{PROG}: error: unknown architecture(s) {', '.join(unknown)}; choose from "
              f"{', '.join(ARCHS)}, unet-mobilenet" if unknown else f"{PROG}: error: no architectures or seeds",
              file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)

    if not (a.throughput_only or a.report_only):
        from segapp.m2nist import make_split

        test, done = make_split("test", n=a.test_size), {r["key"] for r in read_rows(out)}
        todo = [(s, arch) for s in a.seed_list for arch in archs if run_key(arch, s, a) not in done]
        log(f"{len(a.seed_list) * len(archs) - len(todo)} runs already in {out}/results.jsonl, {len(todo)} to go "
            f"({a.epochs} epochs x {a.train_size} fresh images, {len(test[0])} test images)")
        for i, (seed, arch) in enumerate(todo, 1):
            log(f"run {i}/{len(todo)}: {arch} seed {seed}")
            row = bench_one(arch, seed, a, test, log)
            append_row(out, row)
            log(f"  {arch} seed {seed}: test mIoU digits {row['miou_digits']:.4f}, 11-class {row['miou']:.4f}, "
                f"train {row['train_seconds']:.0f}s ({row['train_images_per_s']:.0f} img/s)")
    tp_path = out / "throughput.json"  # last: one short phase, all archs interleaved
    if a.throughput_only or not (a.report_only or a.no_throughput or tp_path.is_file()):
        log(f"throughput: {', '.join(archs)}, batch {a.throughput_batch}, {a.repeats} passes, "
            f"{torch.get_num_threads()} threads")
        tp = measure_throughput(archs, a.width, a.throughput_batch, a.repeats, log) | machine_fields()
        write_json(tp_path, tp)
        log(f"throughput ratios: {tp['ratios']}")
    report(out, a, archs, log)
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the description's and examples' line breaks."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.bench``."""
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="Train and score several architectures with the recipe of `segapp train` (same data, loss,\n"
                    "optimiser, schedule and image budget), once per seed, then time CPU inference of all of them\n"
                    "in one process. Finished runs are appended to OUT/results.jsonl at once and skipped on a\n"
                    "re-run, so an interrupted sweep is resumed by running the same command again.\n"
                    "Results: OUT/results.csv, summary.csv, table.md, bench.png. See docs/benchmarks.md.",
        epilog=f"examples:\n  {PROG} --quick --out runs/bench-quick      # smoke test, a few minutes\n"
               f"  {PROG} --threads 2 --out docs/bench          # the published table\n"
               f"  {PROG} --throughput-only --out docs/bench     # re-time inference only")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)%(default).0s")
    g = p.add_argument_group("what to run")
    g.add_argument("--archs", default=",".join(ARCHS),
                   help="comma-separated architectures: dilated, strided, large-kernel, unet (also: unet-mobilenet)")
    g.add_argument("--seeds", default=FULL["seeds"], help="comma-separated seeds; one run per architecture and seed")
    g.add_argument("--quick", action="store_true",
                   help=f"smoke-test budget: {QUICK['epochs']} epoch x {QUICK['train_size']} images, "
                        f"{QUICK['test_size']} test images, seed {QUICK['seeds']}, {QUICK['repeats']} timing repeats "
                        "(flags given explicitly still win)")
    g.add_argument("--throughput-only", action="store_true", help="only (re)measure inference throughput")
    g.add_argument("--no-throughput", action="store_true", help="skip the throughput phase")
    g.add_argument("--report-only", action="store_true", help="only rewrite summary, table and plot from the files")
    g = p.add_argument_group("budget (identical for every architecture)")
    g.add_argument("--epochs", type=int, default=FULL["epochs"], help="epochs of fresh compositions per run")
    g.add_argument("--train-size", type=int, default=FULL["train_size"], help="fresh training images per epoch")
    g.add_argument("--test-size", type=int, default=FULL["test_size"], help="test-split images scored per run")
    g.add_argument("--width", type=int, default=48,
                   help="channels per layer of dilated / strided / large-kernel (the U-Net is unaffected)")
    g = p.add_argument_group("throughput")
    g.add_argument("--throughput-batch", type=int, default=64, help="images per timed forward pass")
    g.add_argument("--repeats", type=int, default=FULL["repeats"], help="timed passes per architecture (median)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=Path("runs/bench"), help="results folder")
    g.add_argument("--device", default="cpu", help="training device (throughput is always timed on CPU)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.threads is not None:
        if a.threads < 1:
            print(f"{PROG}: error: --threads must be at least 1, got {a.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(a.threads)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())

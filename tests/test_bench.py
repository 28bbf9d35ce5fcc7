"""The architecture benchmark (benchmarks/bench.py) and its baselines: MACs, receptive fields, resumable sweeps."""

import csv
import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import bench
from benchmarks.baselines import ARCHS, build, count_macs, num_params, receptive_field
from segapp.model import DilatedNet, NetConfig


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [(64, 84), (37, 51)])
def test_every_arch_maps_any_size_to_11_class_logits(arch, size):
    model = build(arch, width=8).eval()
    with torch.inference_mode():
        y = model(torch.rand(2, 1, *size))
    assert y.shape == (2, 11, *size)


def test_strided_control_has_exactly_the_dilated_parameters():
    assert num_params(build("strided")) == num_params(build("dilated")) == DilatedNet().num_params()


def test_mac_counter_on_hand_computable_layers():
    conv = nn.Conv2d(2, 3, 3, padding=1)  # 3 outputs x 5x7 pixels x (2 inputs x 3x3 taps)
    assert count_macs(conv, 5, 7, in_channels=2) == 3 * 5 * 7 * 2 * 9
    strided = nn.Conv2d(1, 4, 3, stride=2, padding=1)  # output 3x4
    assert count_macs(strided, 5, 7) == 4 * 3 * 4 * 9
    up = nn.ConvTranspose2d(4, 2, 2, stride=2)  # each of 4x5x7 inputs scatters 2 x 2x2 outputs
    assert count_macs(up, 5, 7, in_channels=4) == 4 * 5 * 7 * 2 * 4
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(35, 10)), 5, 7) == 350


@pytest.mark.parametrize("arch", ARCHS)
def test_mac_counter_agrees_with_torch_flop_counter(arch):
    model = build(arch, width=8).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 1, 64, 84))
    assert fc.get_total_flops() == 2 * count_macs(model)


@pytest.mark.parametrize("seed", [0, 52, 186])
def test_dilated_macs_and_receptive_field_match_the_model_formulas(seed):
    # 52 and 186 draw nets whose ReLUs all shut on the centre pixel's path for one random input (a CI failure
    # once: a field of 0); the measurement must still find 45.
    torch.manual_seed(seed)
    model = DilatedNet(NetConfig(widths=(8,) * 7))
    assert count_macs(model) == model.macs_per_pixel() * 64 * 84
    assert receptive_field(model) == model.receptive_field() == 45
    assert receptive_field(build("large-kernel", 8)) == 45


TINY = ["--archs", "dilated,strided", "--seeds", "0,1", "--epochs", "1", "--train-size", "32",
        "--test-size", "16", "--width", "8", "--repeats", "2", "--throughput-batch", "4"]


@pytest.mark.slow
def test_tiny_sweep_appends_each_run_and_a_rerun_skips_them(tmp_path, monkeypatch):
    assert bench.main([*TINY, "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted((r["arch"], r["seed"]) for r in rows) == [("dilated", 0), ("dilated", 1), ("strided", 0),
                                                           ("strided", 1)]
    assert all(0 <= r["miou_digits"] <= 1 and r["machine"] and r["host"] for r in rows)
    assert len(list(csv.DictReader((tmp_path / "results.csv").open()))) == 4
    tp = json.loads((tmp_path / "throughput.json").read_text())
    assert set(tp["results"]["fp32"]) == {"dilated", "strided"} and "dilated/strided" in tp["ratios"]["bf16"]
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert [s["seeds"] for s in summary] == [2, 2]
    assert "| dilated |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 0

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(bench, "bench_one", must_not_train)
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"key": "torn li')  # a run killed mid-append must not break the resume
    assert bench.main([*TINY, "--out", str(tmp_path)]) == 0
    assert len(bench.read_rows(tmp_path)) == 4


def test_quick_mode_shrinks_the_budget_but_explicit_flags_win(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(bench, "report", lambda out, a, archs, log: seen.update(vars(a)))
    assert bench.main(["--quick", "--epochs", "2", "--report-only", "--out", str(tmp_path)]) == 0
    assert seen["epochs"] == 2 and seen["train_size"] == bench.QUICK["train_size"] and seen["seed_list"] == [0]


def test_unknown_architecture_fails_before_any_training(tmp_path, capsys):
    assert bench.main(["--archs", "dilated,vit", "--out", str(tmp_path)]) == 2
    assert "unknown architecture(s) vit" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_loader_benchmark_times_the_training_batches(tmp_path):
    """benchmarks.loader measures the training's own data path: one row per distinct worker count, written as JSON."""
    from benchmarks.loader import main

    rows = main(["--workers", "0,1,0", "--batches", "2", "--batch-size", "4", "--json", str(tmp_path / "l.json")])
    assert [r["workers"] for r in rows] == [0, 1] and all(r["images_per_s"] > 0 for r in rows)
    assert json.loads((tmp_path / "l.json").read_text()) == rows

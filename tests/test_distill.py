"""Distillation (`segapp train --teacher`), and training that stays finite where a CPU kernel is wrong."""

import csv
import json
import math

import pytest
import torch

from segapp import train
from segapp.cli import main
from segapp.distill import Teacher, grow, shrink
from segapp.model import DilatedNet, NetConfig, load_pretrained
from segapp.runtime import bf16_is_fast, training_memory_format

CPU = torch.device("cpu")
TINY = ["--train-size", "32", "--val-size", "8", "--batch-size", "16", "--epochs", "1"]


def net(width: int, seed: int) -> DilatedNet:
    torch.manual_seed(seed)
    return DilatedNet(NetConfig(widths=(width,) * 7)).eval()


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_distillation_loss_is_zero_on_the_teachers_own_logits_and_positive_elsewhere(temperature):
    teacher = Teacher(net(6, 0), CPU, amp=False, temperature=temperature)
    x = torch.rand(2, 1, 13, 17)  # an odd size: the loss is per pixel
    assert teacher.loss(x, teacher.logits(x)).item() == pytest.approx(0.0, abs=1e-5)
    assert teacher.loss(x, net(6, 1)(x)).item() > 1e-4


def test_the_teacher_is_not_trained_and_the_student_learns_its_distribution():
    teacher = Teacher(net(6, 0), CPU, amp=False, weight=1.0, temperature=1.0)
    before = {k: v.clone() for k, v in teacher.net.state_dict().items()}
    student = net(4, 1).train()  # a leaner net, as in the speed issue
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    x = torch.rand(4, 1, 16, 20)
    first = teacher.loss(x, student(x)).item()
    for _ in range(60):
        loss = teacher.loss(x, student(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert all(torch.equal(v, teacher.net.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in teacher.net.parameters())


def test_train_with_a_teacher_records_it(tmp_path, tiny_weights):
    out = tmp_path / "student"
    assert main(["train", *TINY, "--widths", "4", "--teacher", str(tiny_weights), "--distill-temperature", "3",
                 "--out", str(out)]) == 0
    args = json.loads((out / "args.json").read_text())
    assert args["teacher"] == str(tiny_weights) and len(args["teacher_sha256"]) == 16
    assert args["distill_temperature"] == 3.0
    card = (out / "MODEL_CARD.md").read_text()
    assert f"distilled from `{tiny_weights}`" in card and args["teacher_sha256"] in card


@pytest.mark.parametrize("flag,value", [("--distill-weight", "-1"), ("--distill-temperature", "0")])
def test_bad_distillation_values_are_refused(tmp_path, tiny_weights, capsys, flag, value):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--teacher", str(tiny_weights), flag, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err
    assert not (out / "model.safetensors").exists()


def test_a_missing_teacher_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", *TINY, "--teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err


@pytest.mark.parametrize("widths,amp,expected", [
    ((48,) * 7, True, torch.channels_last), ((32, 64, 16, 48, 32, 32, 16), True, torch.channels_last),
    ((40,) * 7, True, torch.contiguous_format), ((48, 48, 48, 24, 48, 48, 48), True, torch.contiguous_format),
    ((40,) * 7, False, torch.channels_last)])
def test_training_layout_avoids_the_bf16_channels_last_kernel_where_it_is_wrong(widths, amp, expected):
    assert training_memory_format(widths, amp, CPU) == expected


@pytest.mark.skipif(not bf16_is_fast(CPU), reason="the wrong kernel is oneDNN's native bf16 one")
def test_a_width_off_the_multiples_of_16_trains_to_finite_weights_in_bf16(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--widths", "24", "--amp", "on", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert math.isfinite(float(rows[0]["train_loss"]))


def test_a_diverging_run_stops_with_one_line_and_keeps_no_broken_weights(tmp_path, capsys, monkeypatch):
    def nan_loss(cfg):
        return lambda logits, y: logits.float().mean() * float("nan")

    monkeypatch.setattr(train, "build_loss", nan_loss)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--widths", "4", "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "loss became nan" in errors[0] and "--lr" in errors[0]
    assert not (out / "model.safetensors").exists() and not (out / "last.pt").exists()


def test_shrink_keeps_the_strongest_channels_exactly():
    """Channels whose BatchNorm scale and shift are 0 output nothing after ReLU: dropping them (the weakest by
    |gamma|) must leave the net's output unchanged, whatever the input size."""
    parent = net(6, 0)
    widths = (6, 4, 6, 3, 6, 5, 2)
    for bn, w in zip([m for m in parent.features if isinstance(m, torch.nn.BatchNorm2d)], widths):
        bn.weight.data.uniform_(0.5, 1.5)
        dead = torch.randperm(6)[: 6 - w]
        bn.weight.data[dead], bn.bias.data[dead] = 0.0, 0.0
    child = shrink(parent, widths)
    assert child.config.widths == widths
    x = torch.rand(2, 1, 19, 23)
    torch.testing.assert_close(child(x), parent(x), rtol=1e-5, atol=1e-5)
    assert torch.equal(child.features[0].weight, parent.features[0].weight)  # a layer that keeps its width


def test_shrink_refuses_to_grow_a_layer():
    with pytest.raises(ValueError, match="at most the --init net's"):
        shrink(net(6, 0), (6, 6, 6, 8, 6, 6, 6))


@pytest.mark.parametrize("extra,expected,how", [([], 8, None), (["--widths", "4"], 4, "trimming"),
                                                (["--widths", "12", "--blend", "0.5"], 12, "growing")])
def test_init_keeps_the_parents_widths_unless_others_are_given(tmp_path, tiny_weights, extra, expected, how):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--init", str(tiny_weights), *extra, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["widths"] == [expected] * 7
    assert json.loads((out / "args.json").read_text())["widths"] == [expected] * 7
    card = (out / "MODEL_CARD.md").read_text()
    assert ("its widths [8, 8, 8, 8, 8, 8, 8]" in card) == (how is not None)
    assert how is None or f"after {how} its widths" in card


def test_a_grown_run_blends_with_its_parent_grown_the_same_way(tmp_path, tiny_weights):
    """--blend 0 keeps the parent's weights: after growing, that is the parent grown (new channels silent), so the
    run's net computes what the parent computes."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--init", str(tiny_weights), "--widths", "12", "--blend", "0", "--out", str(out)]) == 0
    x = torch.rand(1, 1, 21, 18)
    torch.testing.assert_close(load_pretrained(out).eval()(x), load_pretrained(tiny_weights).eval()(x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("widths,extra,expected", [
    ("16,16,16,4,4,4,4", [], "each at most (to trim) or each at least (to grow)"),
    ("4", ["--blend", "0.5"], "use --blend 1 (a trimmed net is distilled, not blended)"),
])
def test_widths_that_cannot_be_made_from_the_parent_are_a_one_line_error_before_training(
        tmp_path, tiny_weights, capsys, widths, extra, expected):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--init", str(tiny_weights), "--widths", widths, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--widths" in err and widths in err and expected in err
    assert not (out / "model.safetensors").exists() and not (out / "last.pt").exists()


@pytest.mark.parametrize("widths", [(6,) * 7, (9, 6, 7, 12, 6, 8, 10)])
def test_grow_computes_exactly_what_the_parent_computes_and_keeps_its_weights(widths):
    parent = net(6, 0)
    for bn in [m for m in parent.features if isinstance(m, torch.nn.BatchNorm2d)]:  # trained-looking statistics
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.bias.data.uniform_(-0.2, 0.2)
    child = grow(parent, widths)
    assert child.config.widths == widths
    x = torch.rand(2, 1, 19, 23)  # odd sizes: the net is fully convolutional
    torch.testing.assert_close(child(x), parent(x), rtol=1e-5, atol=1e-5)
    assert torch.equal(child.features[0].weight[:6], parent.features[0].weight)
    grown = [w > 6 for w in widths]
    assert any(grown) == any(not torch.equal(a, b) for a, b in zip(grow(parent, widths).state_dict().values(),
                                                                  grow(parent, widths, seed=1).state_dict().values()))
    with pytest.raises(ValueError, match="at least the --init net's"):
        grow(parent, (6, 6, 6, 4, 6, 6, 6))

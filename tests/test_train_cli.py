"""End to end through the command line: tiny train -> evaluate, resume, one-line errors."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from segapp import train
from segapp.cli import main
from segapp.train_config import TrainConfig

TINY = ["--train-size", "48", "--val-size", "16", "--batch-size", "16", "--widths", "8", "--epochs", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_train_writes_every_artefact(trained):
    for name in ("config.json", "model.safetensors", "last.pt", "log.csv", "curve.png", "args.json",
                 "metrics.json", "MODEL_CARD.md", "confusion.png"):
        assert (trained / name).stat().st_size > 0, name
    rows = list(csv.DictReader((trained / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert json.loads((trained / "args.json").read_text())["epochs"] == 2
    assert "segapp train --train-size 48" in (trained / "MODEL_CARD.md").read_text()
    assert not list(trained.glob("*.tmp"))


@pytest.mark.slow
def test_evaluate_json_has_the_documented_keys(trained, capsys):
    assert main(["evaluate", "--weights", str(trained), "--limit", "20", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    for key in ("miou", "miou_digits", "pixel_accuracy", "per_class_iou", "n_images", "params"):
        assert key in m
    assert len(m["per_class_iou"]) == 11 and m["n_images"] == 20
    assert 0.0 <= m["miou"] <= 1.0 and m["params"] < 10_000


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(trained, tmp_path, monkeypatch):
    """An interrupted run + --resume ends with exactly the weights of an uninterrupted run."""
    calls = {"n": 0}
    real_evaluate = train.evaluate

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after epoch 1 was checkpointed
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", dies_in_epoch_two)
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 130
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 0

    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # no duplicated or lost rows
    resumed = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    straight = torch.load(trained / "last.pt", weights_only=True)["model"]
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k
    assert load_file(tmp_path / "model.safetensors").keys() == load_file(trained / "model.safetensors").keys()


@pytest.mark.parametrize("bad", ["corrupt", "missing"])
def test_bad_weights_give_one_line_error(tmp_path, capsys, bad):
    path = tmp_path / "model.safetensors"
    if bad == "corrupt":
        path.write_bytes(b"\x00garbage")
        (tmp_path / "config.json").write_text("{}")
    assert main(["evaluate", "--weights", str(path), "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors" in err


def test_bad_kaggle_pair_gives_one_line_error(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "combined.npy", np.zeros((2, 64, 84), np.uint8))
    np.save(tmp_path / "segmented.npy", np.zeros((2, 64, 84), np.uint8))
    assert main(["evaluate", "--kaggle", str(tmp_path), "--weights", "weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segmented.npy" in err


def test_train_on_a_kaggle_pair(tmp_path, test_split):
    from segapp.kaggle import save_kaggle

    save_kaggle(tmp_path / "pair", *test_split)
    out = tmp_path / "run"
    args = ["train", "--kaggle", str(tmp_path / "pair"), "--epochs", "1", "--widths", "8", "--batch-size", "8"]
    assert main([*args, "--out", str(out)]) == 0
    assert "kaggle pair" in json.loads((out / "metrics.json").read_text())["data"]


def test_cli_defaults_are_the_train_config_defaults():
    from segapp.cli import build_parser, train_config

    cfg = train_config(build_parser().parse_args(["train"]))
    assert cfg == TrainConfig()
    assert (cfg.resolved().epochs, cfg.resolved().lr) == (16, 3e-3)
    fine_tune = train_config(build_parser().parse_args(["train", "--init", "weights"])).resolved()
    assert (fine_tune.epochs, fine_tune.lr, fine_tune.init) == (4, 1e-3, "weights")


@pytest.mark.slow
def test_args_json_and_checkpoint_hold_the_config(trained):
    from dataclasses import asdict

    recorded = json.loads((trained / "args.json").read_text())
    cfg = TrainConfig.from_dict(recorded)
    assert recorded == json.loads(json.dumps(asdict(cfg)))
    assert torch.load(trained / "last.pt", weights_only=True)["args"] == asdict(cfg)
    assert cfg.widths == (8,) * 7 and cfg.epochs == 2 and cfg.out == str(trained)


@pytest.mark.slow
def test_an_old_checkpoint_with_an_args_namespace_dict_still_resumes(tmp_path, monkeypatch):
    """Checkpoints from before TrainConfig recorded vars(argparse.Namespace): extra keys, flags added later missing."""
    real_evaluate, calls = train.evaluate, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", dies_in_epoch_two)
    assert main(["train", *TINY, "--wild", "0", "--out", str(tmp_path)]) == 130
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    old = {k: v for k, v in ckpt["args"].items() if k not in ("wild", "mix_recipe", "data", "init", "init_sha256")}
    old.update(command="train", threads=None, argv=["train", "--out", "x"], widths=list(old["widths"]))
    torch.save({**ckpt, "args": old}, tmp_path / "last.pt")
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 0
    assert [r["epoch"] for r in csv.DictReader((tmp_path / "log.csv").open())] == ["1", "2"]
    resumed = json.loads((tmp_path / "args.json").read_text())
    assert resumed["wild"] == 0.0 and resumed["out"] == str(tmp_path) and "command" not in resumed  # recipe only

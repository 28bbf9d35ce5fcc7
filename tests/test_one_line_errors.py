"""Bad configs, weights, arguments and data get one line and exit 2, never a traceback,
and never a run that "succeeds" on nonsense. Nothing is written when a command is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from segapp.cli import main
from segapp.kaggle import load_kaggle, save_kaggle
from segapp.m2nist import DataError
from segapp.model import WeightsError, load_pretrained

TINY = ["--train-size", "16", "--val-size", "8", "--batch-size", "8", "--widths", "4", "--epochs", "1"]


def one_line(capsys, *must) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and err[0].startswith("segapp ") and ": error: " in err[0], err
    for m in must:
        assert m in err[0], (m, err[0])
    return err[0]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ---- config.json and weights ------------------------------------------------------------------------------------

CONFIGS = {
    "list": b"[1, 2, 3]",
    "string": b'"hello"',
    "number": b"42",
    "non_utf8": b'{"widths": [48, 48, 48, 48, 48, 48, 48], "x": "\xff\xfe"}',
    "infinity": b'{"widths": [Infinity, 48, 48, 48, 48, 48, 48]}',
    "nan": b'{"dilations": [NaN, 2, 4, 8, 4, 2, 1]}',
    "negative_dilation": b'{"widths": [8, 8, 8, 8, 8, 8, 8], "dilations": [1, 2, 4, -8, 4, 2, 1]}',
    "zero_dilation": b'{"widths": [8, 8, 8, 8, 8, 8, 8], "dilations": [0, 2, 4, 8, 4, 2, 1]}',
    "zero_kernel": b'{"widths": [8, 8, 8, 8, 8, 8, 8], "kernel_sizes": [0, 3, 3, 3, 3, 3, 3]}',
    "negative_kernel": b'{"widths": [8, 8, 8, 8, 8, 8, 8], "kernel_sizes": [-3, 3, 3, 3, 3, 3, 3]}',
    "absurd_widths": b'{"widths": [1000000000, 48, 48, 48, 48, 48, 48]}',
    "fractional_width": b'{"widths": [8.5, 8, 8, 8, 8, 8, 8]}',
    "widths_not_a_list": b'{"widths": "eight"}',
    "bool_width": b'{"widths": [true, 8, 8, 8, 8, 8, 8]}',
    "other_channels": b'{"widths": [8, 8, 8, 8, 8, 8, 8], "in_channels": 3}',
    "deep": b"[" * 100000 + b"]" * 100000,
}


@pytest.fixture
def weights_copy(tiny_weights, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    for p in tiny_weights.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_json_is_one_line(case, weights_copy, capsys):
    (weights_copy / "config.json").write_bytes(CONFIGS[case])
    with pytest.raises(WeightsError, match="config.json"):
        load_pretrained(weights_copy)
    assert main(["evaluate", "--weights", str(weights_copy), "--limit", "2"]) == 2
    one_line(capsys, "config.json")


def test_fifo_config_json_does_not_hang(weights_copy, capsys):
    (weights_copy / "config.json").unlink()
    os.mkfifo(weights_copy / "config.json")
    assert main(["evaluate", "--weights", str(weights_copy), "--limit", "2"]) == 2
    one_line(capsys, "config.json", "not a regular file")


def tamper(state: dict, case: str) -> dict:
    k = "features.0.weight"
    if case == "int8":
        state[k] = state[k].to(torch.int8)
    elif case == "bool":
        state[k] = state[k] > 0
    elif case == "nan":
        state[k] = state[k].clone()
        state[k][0, 0, 0, 0] = float("nan")
    elif case == "inf":
        state["head.bias"] = torch.full_like(state["head.bias"], float("inf"))
    elif case == "negative_running_var":
        state["features.1.running_var"] = -state["features.1.running_var"].abs() - 1
    elif case == "float_counter":
        state["features.1.num_batches_tracked"] = torch.tensor(1.5)
    return state


@pytest.mark.parametrize("case", ["int8", "bool", "nan", "inf", "negative_running_var", "float_counter"])
def test_broken_weights_are_refused(case, weights_copy, tmp_path, capsys):
    path = weights_copy / "model.safetensors"
    save_file(tamper(load_file(path), case), path)
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_pretrained(weights_copy)
    assert main(["evaluate", "--weights", str(weights_copy), "--limit", "2"]) == 2
    one_line(capsys, "model.safetensors")
    ckpt = tmp_path / "last.pt"  # the same through a training checkpoint
    torch.save({"config": json.loads((weights_copy / "config.json").read_text()), "model": load_file(path)}, ckpt)
    with pytest.raises(WeightsError, match="last.pt"):
        load_pretrained(ckpt)


@pytest.mark.parametrize("model", [[1, 2], "weights", {"features.0.weight": [1.0]}])
def test_checkpoint_with_odd_entries_is_refused(model, tmp_path, tiny_weights):
    ckpt = tmp_path / "last.pt"
    torch.save({"config": json.loads((tiny_weights / "config.json").read_text()), "model": model}, ckpt)
    with pytest.raises(WeightsError, match="last.pt"):
        load_pretrained(ckpt)


# ---- train arguments --------------------------------------------------------------------------------------------

TRAIN_ARGS = {
    "lr_negative": (["--lr", "-1"], "--lr"),
    "lr_zero": (["--lr", "0"], "--lr"),
    "lr_nan": (["--lr", "nan"], "--lr"),
    "lr_inf": (["--lr", "inf"], "--lr"),
    "batch_size_zero": (["--batch-size", "0"], "--batch-size"),
    "train_size_negative": (["--train-size", "-5"], "--train-size"),
    "val_size_zero": (["--val-size", "0"], "--val-size"),
    "epochs_zero": (["--epochs", "0"], "--epochs"),
    "weight_decay_negative": (["--weight-decay", "-0.1"], "--weight-decay"),
    "dice_weight_nan": (["--dice-weight", "nan"], "--dice-weight"),
    "seed_negative": (["--seed", "-1"], "--seed"),
    "workers_negative": (["--workers", "-1"], "--workers"),
    "batch_larger_than_data": (["--batch-size", "64"], "larger than --train-size"),
    "device_bogus": (["--device", "bogus"], "--device"),
    "device_meta": (["--device", "meta"], "--device"),
    "device_missing_gpu": (["--device", "cuda:99"], "--device cuda:99"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_ARGS))
def test_bad_train_arguments_are_one_line_and_write_nothing(case, tmp_path, capsys):
    extra, message = TRAIN_ARGS[case]
    out = tmp_path / "run"
    assert main(["train", *TINY, *extra, "--out", str(out)]) == 2
    one_line(capsys, message)
    assert not out.exists()  # no args.json left behind


def test_device_cuda_without_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--device", "cuda", "--out", str(out)]) == 2
    one_line(capsys, "--device cuda", "--device cpu")
    assert not out.exists()


@pytest.mark.parametrize("threads", ["-1", "0"])
def test_bad_threads(threads, tmp_path, capsys):
    assert main(["--threads", threads, "evaluate", "--limit", "2"]) == 2
    one_line(capsys, "--threads")


def test_train_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main(["train", *TINY, "--out", str(f)]) == 2
    one_line(capsys, "is a file")
    assert f.read_text() == "mine"


@pytest.mark.parametrize("case", ["no_args", "args_not_a_dict", "args_incomplete", "no_last_pt", "no_out"])
def test_resume_without_what_resuming_needs(case, tmp_path, tiny_weights, capsys):
    out = tmp_path / "run"
    if case != "no_out":
        out.mkdir()
    config = json.loads((tiny_weights / "config.json").read_text())
    state = load_file(tiny_weights / "model.safetensors")
    full = {"config": config, "model": state, "optimizer": {}, "scheduler": {}, "epoch": 1, "best": 0.0,
            "history": [], "rng": {}, "args": {"epochs": 2}}
    if case == "no_args":
        del full["args"]
    elif case == "args_not_a_dict":
        full["args"] = ["epochs", 2]
    if case not in ("no_last_pt", "no_out"):
        torch.save(full, out / "last.pt")
    before = listing(tmp_path)
    assert main(["train", "--out", str(out), "--resume"]) == 2
    one_line(capsys, "--resume")
    assert listing(tmp_path) == before


def test_predict_alpha_out_of_range(tmp_path, test_split, tiny_weights, capsys):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(test_split[0][0]).save(tmp_path / "in" / "a.png")
    for alpha in ("5", "-0.1", "nan"):
        assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--alpha", alpha,
                     "--weights", str(tiny_weights)]) == 2
        one_line(capsys, "--alpha")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [(["--limit", "0"], "--limit"), (["--limit", "-3"], "--limit"),
                                            (["--width", "5"], "--width"),
                                            (["--device", "bogus"], "--device")])
def test_bad_evaluate_arguments(extra, message, tiny_weights, capsys):
    assert main(["evaluate", "--weights", str(tiny_weights), *extra]) == 2
    one_line(capsys, message)


@pytest.mark.slow
def test_evaluate_json_into_a_closed_pipe(tiny_weights, tmp_path):
    """`segapp evaluate --json | head -c 300`: the reader is gone before segapp writes; no BrokenPipeError."""
    r, w = os.pipe()
    os.close(r)  # nobody will ever read
    proc = subprocess.run([sys.executable, "-m", "segapp.cli", "--threads", "1", "evaluate", "--weights",
                           str(tiny_weights), "--limit", "4", "--json"], stdout=w, stderr=subprocess.PIPE, timeout=300)
    os.close(w)
    assert proc.returncode == 141, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr and b"Exception" not in proc.stderr


# ---- Kaggle pairs -----------------------------------------------------------------------------------------------


def pair(folder: Path, images, segmented) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "combined.npy", images)
    np.save(folder / "segmented.npy", segmented)
    return folder


def one_hot(masks: np.ndarray) -> np.ndarray:
    return np.eye(11, dtype=np.float32)[masks]


def kaggle_case(case: str, test_split, folder: Path) -> Path:
    imgs, masks = test_split[0][:12], test_split[1][:12]
    if case == "string_images":
        return pair(folder, imgs.astype(str), one_hot(masks))
    if case == "string_masks":
        return pair(folder, imgs, one_hot(masks).astype(str))
    if case == "object_images":
        folder.mkdir(parents=True)
        np.save(folder / "combined.npy", np.array([None] * 12, dtype=object).reshape(12, 1, 1), allow_pickle=True)
        np.save(folder / "segmented.npy", one_hot(masks[:, :1, :1]))
        return folder
    if case == "no_images":
        return pair(folder, imgs[:0], one_hot(masks[:0]))
    if case == "nan_image":
        f = imgs.astype(np.float32) / 255
        f[3, 5, 5] = np.nan
        return pair(folder, f, one_hot(masks))
    if case == "out_of_range":
        return pair(folder, imgs.astype(np.float32) * 2 - 100, one_hot(masks))
    if case == "all_zero_masks":
        return pair(folder, imgs, np.zeros((*imgs.shape, 11), np.float32))
    if case == "tied_masks":
        return pair(folder, imgs, np.ones((*imgs.shape, 11), np.uint8))
    if case == "truncated":
        pair(folder, imgs, one_hot(masks))
        data = (folder / "segmented.npy").read_bytes()
        (folder / "segmented.npy").write_bytes(data[: len(data) // 2])
        return folder
    raise ValueError(case)


KAGGLE_CASES = {"string_images": "not numbers", "string_masks": "not numbers", "object_images": "combined.npy",
                "no_images": "no images", "nan_image": "NaN", "out_of_range": "pixel values",
                "all_zero_masks": "no single class", "tied_masks": "no single class", "truncated": "segmented.npy"}


@pytest.mark.parametrize("case", sorted(KAGGLE_CASES))
def test_bad_kaggle_pairs(case, test_split, tmp_path, tiny_weights, capsys):
    folder = kaggle_case(case, test_split, tmp_path / "pair")
    with pytest.raises(DataError, match=KAGGLE_CASES[case]):
        load_kaggle(folder)
    assert main(["evaluate", "--kaggle", str(folder), "--weights", str(tiny_weights)]) == 2
    one_line(capsys, KAGGLE_CASES[case])
    out = tmp_path / "run"
    assert main(["train", "--kaggle", str(folder), *TINY, "--out", str(out)]) == 2
    one_line(capsys, KAGGLE_CASES[case])
    assert listing(out) in ([], ["args.json"]) and not (out / "last.pt").exists()


@pytest.mark.parametrize("n", [1, 5])
def test_kaggle_pair_too_small_to_train(n, test_split, tmp_path, capsys):
    save_kaggle(tmp_path / "pair", test_split[0][:n], test_split[1][:n])
    out = tmp_path / "run"
    assert main(["train", "--kaggle", str(tmp_path / "pair"), *TINY, "--out", str(out)]) == 2
    one_line(capsys, "--batch-size")
    assert not out.exists()


def test_kaggle_float_images_in_zero_one_still_load(test_split, tmp_path):
    imgs, masks = test_split[0][:4], test_split[1][:4]
    folder = pair(tmp_path / "pair", imgs.astype(np.float32) / 255, one_hot(masks))
    got, got_masks = load_kaggle(folder)
    assert np.abs(got.astype(int) - imgs).max() <= 1 and np.array_equal(got_masks, masks)

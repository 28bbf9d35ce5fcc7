"""No data loss, ever: no segapp command deletes or changes a file it did not create for this run.

Each test builds the situation a user reported (or a close cousin), runs the real command line and checks the
user's files byte for byte (and their modification times) afterwards. docs/reliability.md lists them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from imagefiles import snapshot
from PIL import Image

from segapp.cli import main
from segapp.mask_files import read_mask
from segapp.model import DilatedNet, NetConfig, save_pretrained
from segapp.predict_plan import SUMMARY_CSV, SUMMARY_JSONL
from segapp.safeio import is_own_temp, temp_name
from segapp.train_resume import RUN_FILES

TINY_TRAIN = ["--train-size", "16", "--val-size", "8", "--batch-size", "8", "--widths", "4", "--epochs", "1"]


def images(root: Path, arrays, names=None) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = root / (names[i] if names else f"{i:03d}.png")
        Image.fromarray(a).save(p, format="PNG")
        paths.append(p)
    return paths


def predict(inp, out, weights, *extra) -> int:
    return main(["predict", str(inp), "--out", str(out), "--weights", str(weights), "--workers", "2", "--quiet",
                 *extra])


def rows(out: Path) -> dict[str, dict]:
    return {r["file"]: r for r in map(json.loads, (out / SUMMARY_JSONL).read_text().splitlines())}


# ---- 1. only segapp's own temp files are ever deleted ---------------------------------------------------------


def test_temp_names_are_short_and_recognisable():
    names = {temp_name() for _ in range(200)}
    assert len(names) == 200 and all(is_own_temp(n) and len(n) == 20 for n in names)
    for other in (".notes.tmp", ".scan.tmp", ".sg-00000000.tmp", ".sg-000000000000.tmp", "x.sg-1234.tmp",
                  ".top.png.1a2b3c4d.tmp", ".sg-" + "0" * 12 + ".tmp.png"):
        assert not is_own_temp(other), other


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_predict_sweeps_only_its_own_temp_files(flag, tmp_path, test_split, tiny_weights):
    w = tmp_path / "W"
    images(w / "in", test_split[0][:3])
    assert predict(w / "in", w, tiny_weights) == 0
    user = {w / ".notes.tmp": b"notes\n", w / "masks" / ".mine.tmp": b"mine\n",
            w / ".sg-00000000.tmp": b"looks like segapp's, is not\n", w / "keep.txt": b"unrelated\n"}
    for p, data in user.items():
        p.write_bytes(data)
    leftover = [w / temp_name(), w / "masks" / temp_name(), w / "overlays" / temp_name()]  # a killed run's
    for p in leftover:
        p.write_bytes(b"half a png")
    os.symlink(w / "keep.txt", w / temp_name())  # a link with segapp's temp shape: not a file segapp wrote
    before = snapshot(w / "in")
    assert predict(w / "in", w, tiny_weights, flag) == 0
    assert {p: p.read_bytes() for p in user} == user
    assert not any(p.exists() for p in leftover)
    assert snapshot(w / "in") == before
    assert [p for p in w.iterdir() if p.is_symlink()]


@pytest.mark.parametrize("name", [".scan.tmp", "own"])
def test_predict_never_deletes_its_input_even_if_named_like_a_temp_file(name, tmp_path, test_split, tiny_weights):
    w = tmp_path / "W"
    (w / "masks").mkdir(parents=True)
    src = w / (temp_name() if name == "own" else name)  # even an input with exactly segapp's temp-name shape
    Image.fromarray(test_split[0][0]).save(src, format="PNG")
    data = src.read_bytes()
    assert predict(src, w, tiny_weights, "--resume") == 0
    assert src.read_bytes() == data and len(rows(w)) == 1


def test_train_sweeps_only_its_own_temp_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    user = {out / ".notes.tmp": b"notes", out / ".last.pt.abcd1234.tmp": b"old-style name, not provably ours"}
    for p, data in user.items():
        p.write_bytes(data)
    leftover = out / temp_name()
    leftover.write_bytes(b"half a checkpoint")
    assert main(["--threads", "1", "train", *TINY_TRAIN, "--out", str(out)]) == 0
    assert {p: p.read_bytes() for p in user} == user and not leftover.exists()


# ---- 2. no output path is ever an input ------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [None, "--resume", "--overwrite"])
@pytest.mark.parametrize("name", ["args.json", SUMMARY_JSONL, SUMMARY_CSV])
def test_single_input_named_like_a_run_file_is_never_replaced(name, flag, tmp_path, test_split, tiny_weights, capsys):
    d = tmp_path / "D"
    d.mkdir()
    src = d / name
    Image.fromarray(test_split[0][0]).save(src, format="PNG")
    before = snapshot(d)
    assert predict(src, d, tiny_weights, *([flag] if flag else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input" in err[0] and "choose another OUT" in err[0]
    assert snapshot(d) == before  # nothing written at all


def test_input_linked_to_an_output_is_never_replaced(tmp_path, test_split, tiny_weights, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    images(inp, test_split[0][:2])
    (out / "masks").mkdir(parents=True)
    real = out / "masks" / "linked.png"  # the user's file lives where an output will go; INPUT links to it
    Image.fromarray(test_split[0][3]).save(real)
    os.symlink(real, inp / "linked.png")
    data = real.read_bytes()
    assert predict(inp, out, tiny_weights, "--overwrite") == 1
    assert real.read_bytes() == data
    r = rows(out)
    assert "would replace the input linked.png" in r["linked.png"]["status"]
    assert r["000.png"]["status"] == "ok"
    os.symlink(out / SUMMARY_CSV, inp / "summary_link.png")  # an input that is OUT's own summary: refused outright
    before = snapshot(out)
    assert predict(inp, out, tiny_weights, "--overwrite") == 2
    assert "would replace the input summary_link.png" in capsys.readouterr().err
    assert snapshot(out) == before


def test_summary_is_never_appended_through_a_link(tmp_path, test_split, tiny_weights):
    inp, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "diary.txt"
    images(inp, test_split[0][:2])
    assert predict(inp, out, tiny_weights) == 0
    elsewhere.write_text("my diary\n")
    (out / SUMMARY_CSV).unlink()
    os.symlink(elsewhere, out / SUMMARY_CSV)
    (out / "masks" / "001.png").unlink()
    assert predict(inp, out, tiny_weights, "--resume") == 0
    assert elsewhere.read_text() == "my diary\n" and not (out / SUMMARY_CSV).is_symlink()


# ---- 3. train never replaces an existing run without --resume --------------------------------------------------


@pytest.mark.parametrize("name", RUN_FILES)
def test_train_refuses_an_existing_run_without_resume(name, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"precious")
    (out / "other.txt").write_text("mine")
    before = snapshot(out)
    assert main(["train", *TINY_TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a training run" in err[0] and "--resume" in err[0] and name in err[0]
    assert snapshot(out) == before


def test_train_resume_after_a_stop_before_the_first_epoch(tmp_path, monkeypatch):
    """Killed before epoch 1 finished: only args.json exists. --resume starts again; nothing else is lost."""
    import segapp.train

    out = tmp_path / "run"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(segapp.train, "evaluate", stop)
    assert main(["--threads", "1", "train", *TINY_TRAIN, "--out", str(out)]) == 130
    assert not (out / "last.pt").exists() and (out / "args.json").exists()
    monkeypatch.undo()
    assert main(["--threads", "1", "train", *TINY_TRAIN, "--out", str(out)]) == 2  # refused: a run is there
    assert main(["--threads", "1", "train", "--out", str(out), "--resume"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


# ---- 4. --resume redoes files whose input or weights changed ---------------------------------------------------


def other_weights(folder: Path) -> Path:
    torch.manual_seed(123)
    save_pretrained(DilatedNet(NetConfig(widths=(8,) * 7)).eval(), folder)
    return folder


def test_resume_redoes_a_changed_input_and_keeps_the_rest(tmp_path, test_split, tiny_weights, capsys):
    imgs = test_split[0]
    inp, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    images(inp, imgs[:3])
    assert predict(inp, out, tiny_weights, "--amp", "off") == 0
    first, fp = snapshot(out), rows(out)["001.png"]["input_sha256"]
    assert len(fp) == 16 and rows(out)["001.png"]["weights_sha256"]
    Image.fromarray(imgs[10]).save(inp / "001.png")  # same name, another picture
    capsys.readouterr()
    assert predict(inp, out, tiny_weights, "--amp", "off", "--resume") == 0
    assert "1 files done earlier are redone" in capsys.readouterr().err
    after = snapshot(out)
    assert after["masks/000.png"] == first["masks/000.png"] and after["masks/002.png"] == first["masks/002.png"]
    assert after["masks/001.png"] != first["masks/001.png"] and rows(out)["001.png"]["input_sha256"] != fp
    images(ref, [imgs[10]], ["001.png"])
    assert predict(ref, tmp_path / "refout", tiny_weights, "--amp", "off") == 0
    assert np.array_equal(read_mask(out / "masks" / "001.png"), read_mask(tmp_path / "refout" / "masks" / "001.png"))
    assert rows(out)["001.png"]["digits"] == rows(tmp_path / "refout")["001.png"]["digits"]


def test_resume_with_other_weights_redoes_everything(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    images(inp, test_split[0][:3])
    assert predict(inp, out, tiny_weights) == 0
    old = rows(out)
    other = other_weights(tmp_path / "w2")
    assert predict(inp, out, other, "--resume") == 0
    new = rows(out)
    assert {r["weights_sha256"] for r in new.values()} != {r["weights_sha256"] for r in old.values()}
    assert len({r["weights_sha256"] for r in new.values()}) == 1
    expected = tmp_path / "expected"
    assert predict(inp, expected, other) == 0
    for name in new:
        assert np.array_equal(read_mask(out / new[name]["mask"]), read_mask(expected / new[name]["mask"]))
    finished = snapshot(out)
    assert predict(inp, out, other, "--resume") == 0 and snapshot(out) == finished  # now current: untouched


def test_resume_of_a_summary_without_fingerprints_redoes_the_files(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    images(inp, test_split[0][:2])
    assert predict(inp, out, tiny_weights) == 0
    old = [json.loads(line) for line in (out / SUMMARY_JSONL).read_text().splitlines()]
    for r in old:  # as an earlier segapp wrote it
        del r["input_sha256"], r["weights_sha256"]
    (out / SUMMARY_JSONL).write_text("".join(json.dumps(r) + "\n" for r in old))
    assert predict(inp, out, tiny_weights, "--resume") == 0
    assert all(r["input_sha256"] for r in rows(out).values())


# ---- 11. file modes: every output is 0o666 less the umask --------------------------------------------------------


def test_train_and_predict_files_have_the_usual_permissions(tmp_path, test_split, tiny_weights):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert main(["--threads", "1", "train", *TINY_TRAIN, "--out", str(run)]) == 0
        assert predict(*images(tmp_path / "in", test_split[0][:2])[:1], tmp_path / "out", tiny_weights) == 0
    finally:
        os.umask(old)
    files = [p for d in (run, tmp_path / "out") for p in d.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}


# ---- evaluate --out and the summary's readability ---------------------------------------------------------------


def test_evaluate_never_replaces_files_in_out(tmp_path, tiny_weights, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}\n')
    before = snapshot(out)
    assert main(["evaluate", "--weights", str(tiny_weights), "--limit", "2", "--out", str(out)]) == 2
    assert "already holds metrics.json" in capsys.readouterr().err and snapshot(out) == before


def test_summary_csv_and_jsonl_agree(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    images(inp, test_split[0][:3])
    assert predict(inp, out, tiny_weights) == 0
    with open(out / SUMMARY_CSV, newline="", encoding="utf-8") as f:
        from_csv = {r["file"]: r for r in csv.DictReader(f)}
    for name, r in rows(out).items():
        assert from_csv[name]["input_sha256"] == r["input_sha256"]
        assert from_csv[name]["weights_sha256"] == r["weights_sha256"]

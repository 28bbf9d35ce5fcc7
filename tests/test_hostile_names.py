"""File names and folders that could break `segapp predict`, and a hidden folder of hostile files through it.

Names that are not UTF-8, names at the 255-byte limit, names equal but for case or extension, a file beside a folder
whose name its output would take, a full disk. Each run must finish without a traceback, give every file a summary
row, leave INPUT byte-for-byte unchanged and touch nothing in OUT it did not write.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import sys
from pathlib import Path

import pytest
from imagefiles import snapshot
from PIL import Image

import segapp.predict_files
import segapp.predict_outputs
from segapp.cli import main
from segapp.predict_plan import SUMMARY_CSV, SUMMARY_JSONL
from segapp.safeio import temp_name

NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # what os.listdir gives for the bytes b'caf\xe9.png'


def save(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG" if path.suffix.lower() == ".jpg" else "PNG")


def predict(inp, out, weights, *extra) -> int:
    return main(["predict", str(inp), "--out", str(out), "--weights", str(weights), "--workers", "2", "--quiet",
                 *extra])


def summary(out: Path) -> tuple[list[dict], list[dict]]:
    raw = (out / SUMMARY_CSV).read_bytes()
    raw.decode("utf-8")  # valid UTF-8, whatever the file names
    with open(out / SUMMARY_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows, [json.loads(line) for line in (out / SUMMARY_JSONL).read_text(encoding="utf-8").splitlines()]


def test_non_utf8_file_name(tmp_path, test_split, tiny_weights, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    save(inp / NON_UTF8, test_split[0][0])
    save(inp / "plain.png", test_split[0][1])
    assert predict(inp, out, tiny_weights) == 0
    rows, jrows = summary(out)
    assert [r["file"] for r in rows] == [r["file"] for r in jrows] == ["caf\\xe9.png", "plain.png"]
    assert rows[0]["status"] == "ok" and rows[0]["mask"] == "masks/caf\\xe9.png"
    assert os.path.exists(os.fsencode(out / "masks") + b"/caf\xe9.png")  # the output keeps the input's bytes
    finished = snapshot(out)
    assert predict(inp, out, tiny_weights, "--resume") == 0 and snapshot(out) == finished
    os.unlink(os.fsencode(out / "masks") + b"/caf\xe9.png")
    assert predict(inp, out, tiny_weights, "--resume") == 0
    assert os.path.exists(os.fsencode(out / "masks") + b"/caf\xe9.png")
    assert "Traceback" not in capsys.readouterr().err


def test_long_file_name(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    name = "n" * 247 + ".png"  # 251 characters: the old temp-name prefix pushed it past 255
    save(inp / name, test_split[0][0])
    save(inp / ("m" * 251 + ".jpg"), test_split[0][1])  # clashing with nothing, but .png is shorter than .jpg
    save(inp / ("k" * 249 + ".png"), test_split[0][2])
    save(inp / ("k" * 249 + ".jpg"), test_split[0][3])  # clashes: kept extensions would make 258 bytes
    assert predict(inp, out, tiny_weights) == 0
    rows, _ = summary(out)
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 4
    assert (out / "masks" / name).is_file()
    masks = [r["mask"] for r in rows]
    assert len(set(masks)) == 4 and all(len(Path(m).name.encode()) <= 255 for m in masks)


def test_names_equal_but_for_case_both_keep_their_extension(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    save(inp / "a.png", test_split[0][0])
    save(inp / "a.PNG", test_split[0][1])
    save(inp / "b.png", test_split[0][2])
    save(inp / "b.jpg", test_split[0][3])
    assert predict(inp, out, tiny_weights) == 0
    masks = {r["file"]: r["mask"] for r in summary(out)[0]}
    assert masks["b.png"] == "masks/b.png.png" and masks["b.jpg"] == "masks/b.jpg.png"
    assert masks["a.png"].startswith("masks/a.png~") and masks["a.PNG"].startswith("masks/a.PNG~")
    assert len({m.casefold() for m in masks.values()}) == 4  # distinct even on a case-insensitive disk


def test_file_beside_a_folder_its_output_would_be(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    save(inp / "x.jpg", test_split[0][0])
    save(inp / "x.png" / "inner.png", test_split[0][1])
    assert predict(inp, out, tiny_weights) == 0
    masks = {r["file"]: r["mask"] for r in summary(out)[0]}
    assert masks == {"x.jpg": "masks/x.jpg.png", "x.png/inner.png": "masks/x.png/inner.png"}


def test_an_output_blocked_by_a_folder_is_named_in_the_error(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    save(inp / "y.png", test_split[0][0])
    (out / "masks" / "y.png").mkdir(parents=True)  # someone's folder where the mask would go
    assert predict(inp, out, tiny_weights, "--overwrite") == 1
    status = summary(out)[0][0]["status"]
    assert "masks/y.png" in status and "in the way" in status and (out / "masks" / "y.png").is_dir()


def full_disk_after(n: int, monkeypatch):
    real = segapp.predict_files.write_atomic
    calls = [0]

    def write(path, data, fsync=False):
        calls[0] += 1
        if calls[0] > n and Path(path).suffix == ".png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, fsync)

    for module in (segapp.predict_files, segapp.predict_outputs):  # args.json; outputs and summary
        monkeypatch.setattr(module, "write_atomic", write)


def test_disk_full_names_the_file_and_resume_finishes(tmp_path, test_split, tiny_weights, monkeypatch, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        save(inp / f"{i}.png", test_split[0][i])
    full_disk_after(5, monkeypatch)  # args.json + 2 files' outputs, then the disk is full
    assert predict(inp, out, tiny_weights, "--batch-size", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "No space left on device" in err[-1] and ".png" in err[-1] and "--resume" in err[-1]
    assert "Traceback" not in "\n".join(err)
    monkeypatch.undo()
    assert predict(inp, out, tiny_weights, "--resume") == 0
    rows, _ = summary(out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)


def test_train_disk_full_names_the_file_and_resume_finishes(tmp_path, monkeypatch, capsys):
    import segapp.train

    real = segapp.train.write_atomic

    def write(path, data, fsync=False):
        if Path(path).name == "last.pt":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, fsync)

    monkeypatch.setattr(segapp.train, "write_atomic", write)
    out = tmp_path / "run"
    tiny = ["--train-size", "16", "--val-size", "8", "--batch-size", "8", "--widths", "4", "--epochs", "1"]
    assert main(["--threads", "1", "train", *tiny, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "last.pt" in err[-1] and "No space left" in err[-1] and "--resume" in err[-1]
    monkeypatch.undo()
    assert main(["--threads", "1", "train", "--out", str(out), "--resume"]) == 0
    assert (out / "last.pt").is_file() and (out / "MODEL_CARD.md").is_file()


def postscript() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


def hostile_folder(root: Path, imgs) -> dict[str, str]:
    """A hidden folder of hostile files and names; returns {summary name: expected status ('ok' or reason)}."""
    ok = {
        "caf\\xe9.png": NON_UTF8, "snow \u2603 \u00fcml.png": None, "new\nline.png": None, "tab\tand space .png": None,
        'comma, "quotes".png': None, "-dash.png": None, "%s%n%x.png": None, "back\\slash.png": None,
        "a.png": None, "a.PNG": None, "x.jpg": None, "x.png/inner.png": None, "n" * 247 + ".png": None,
        ".sg-0123456789ab.tmp.png": None, "summary.csv.png": None, "masks.png": None,
    }
    for i, (shown_name, real) in enumerate(ok.items()):
        save(root / (real or shown_name), imgs[i])
    (root / "eps.png").write_bytes(postscript())
    (root / "empty.png").write_bytes(b"")
    os.mkfifo(root / "fifo.png")
    os.symlink("loop.png", root / "loop.png")
    (root / "notes.txt").write_text("not an image\n")
    bad = {"eps.png": "not an image", "empty.png": "empty file", "fifo.png": "not a regular file",
           "loop.png": "link loop"}
    return {**dict.fromkeys(ok, "ok"), **bad}


def test_hidden_folder_of_hostile_files_through_predict(tmp_path, test_split, tiny_weights, capsys):
    root, out = tmp_path / ".hostile", tmp_path / "out"
    expected = hostile_folder(root, test_split[0])
    out.mkdir()
    unrelated = {".notes.tmp": b"notes", ".scan.tmp": b"scan", "keep.txt": b"keep", ".sg-00000000.tmp": b"x"}
    for name, data in unrelated.items():
        (out / name).write_bytes(data)
    before_in, before_out = snapshot(root), {n: (out / n).read_bytes() for n in unrelated}
    for extra in ([], ["--resume"], ["--overwrite"], ["--resume"]):
        code = predict(root, out, tiny_weights, "--hidden", *extra)
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err, err
        assert snapshot(root) == before_in
        assert {n: (out / n).read_bytes() for n in unrelated} == before_out
        rows, jrows = summary(out)
        got = {r["file"]: r["status"] for r in rows}
        assert set(got) == set(expected) and [r["file"] for r in jrows] == [r["file"] for r in rows]
        for name, want in expected.items():
            assert got[name] == "ok" if want == "ok" else (got[name].startswith("error") and want in got[name]), name
        masks = [r["mask"] for r in rows if r["status"] == "ok"]
        assert len(set(masks)) == len(masks) and len(masks) == 16
        assert all((out / m).is_file() for m in masks if m != "masks/caf\\xe9.png")  # that one: its real bytes
        assert os.path.isfile(os.fsencode(out / "masks") + b"/caf\xe9.png")
    assert not [p for p in out.rglob("*") if p.name.startswith(".sg-") and p.name.endswith(".tmp")
                and p.name != ".sg-00000000.tmp"]


@pytest.mark.skipif(sys.platform != "linux", reason="PostScript detection via Pillow's EPS plugin")
def test_postscript_never_reaches_ghostscript(tmp_path, tiny_weights, monkeypatch):
    from PIL import EpsImagePlugin

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "/bin/false", raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "doc.png").write_bytes(postscript())
    assert predict(tmp_path / "in", tmp_path / "out", tiny_weights) == 1
    assert "not an image" in summary(tmp_path / "out")[0][0]["status"]


def test_own_temp_shaped_leftovers_are_swept_in_subfolders(tmp_path, test_split, tiny_weights):
    inp, out = tmp_path / "in", tmp_path / "out"
    save(inp / "d" / "e.png", test_split[0][0])
    assert predict(inp, out, tiny_weights) == 0
    stale = out / "masks" / "d" / temp_name()
    stale.write_bytes(b"half")
    assert predict(inp, out, tiny_weights, "--resume") == 0 and not stale.exists()

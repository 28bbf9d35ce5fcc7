"""`segapp predict` (plus `export` / `score`) on generated folders: formats, bad files, reruns, interrupts."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from imagefiles import png_claiming, snapshot, wait_for_rows
from PIL import Image, ImageOps

import segapp.predict
from segapp.classes import flat_palette
from segapp.cli import main
from segapp.datasets import to_tensor
from segapp.export import on_paper
from segapp.images import IMAGE_EXTENSIONS, prepare
from segapp.inference import InferenceConfig, Segmenter
from segapp.mask_files import read_mask
from segapp.model import DEFAULT_WEIGHTS, load_pretrained

OK = "ok"


def save(path: Path, img: Image.Image, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def make_messy(root: Path, imgs: np.ndarray) -> dict[str, str]:
    """Writes a folder of mixed, odd and bad inputs; returns ``{rel: expected status ('ok' or a reason part)}``."""
    g = imgs[0]
    save(root / "top.png", Image.fromarray(g))
    save(root / "Upper.PNG", Image.fromarray(imgs[1][:53, :37]))  # odd size, upper-case extension
    save(root / "scan.png", Image.fromarray(imgs[2]))  # same name as scan.jpg: both keep their extension
    save(root / "scan.jpg", Image.fromarray(imgs[3]), quality=95)
    save(root / "wide.png", Image.fromarray(np.hstack([imgs[4], imgs[5], imgs[6][:, :56]])))  # 64x224
    rgba = np.dstack([np.full_like(g, 255)] * 3 + [g])  # white ink, transparent background
    save(root / "a" / "rgba.png", Image.fromarray(rgba, "RGBA"))
    save(root / "a" / "photo.webp", Image.fromarray(np.dstack([imgs[7]] * 3)), lossless=True)
    save(root / "a" / "x.bmp", Image.fromarray(imgs[8]))
    save(root / "a" / "y.tiff", Image.fromarray(imgs[9]))
    save(root / "a" / "b" / "deep16.png", Image.fromarray(imgs[10].astype(np.uint16) * 257))
    save(root / "a" / "b" / "pal.gif", Image.fromarray(imgs[11]).convert("P"))
    save(root / "a" / "b" / "paper.jpg", Image.fromarray(on_paper(imgs[12])), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated by 90 degrees
    save(root / "a" / "b" / "rotated.jpg", Image.fromarray(imgs[13][:60, :44]), exif=exif, quality=95)
    phone = [f"a/b/phone{ext}" for ext in IMAGE_EXTENSIONS if ext in (".heic", ".avif")]  # where this Pillow reads them
    for k, rel in enumerate(phone):
        save(root / rel, Image.fromarray(on_paper(imgs[16 + k])), quality=90)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "notimage.jpg").write_text("hello, not a picture\n")
    buf = io.BytesIO()
    Image.fromarray(imgs[14]).save(buf, format="PNG")
    (bad / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (bad / "huge.png").write_bytes(png_claiming(5000, 5000))
    save(bad / "tiny.png", Image.fromarray(imgs[15][:3, :3]))
    os.symlink(root / "nowhere.png", root / "broken.png")
    os.symlink(root, root / "a" / "loop")  # a folder link back to the top: must not be followed
    save(root / ".hidden.png", Image.fromarray(g))  # hidden files, hidden folders, other types: skipped
    save(root / ".cache" / "x.png", Image.fromarray(g))
    (root / "notes.txt").write_text("not an image\n")
    expected = {f: OK for f in ["top.png", "Upper.PNG", "scan.png", "scan.jpg", "wide.png", "a/rgba.png",
                                "a/photo.webp", "a/x.bmp", "a/y.tiff", "a/b/deep16.png", "a/b/pal.gif",
                                "a/b/paper.jpg", "a/b/rotated.jpg", *phone]}
    expected.update({"bad/empty.png": "empty file", "bad/notimage.jpg": "not an image",
                     "bad/truncated.png": "corrupt or truncated", "bad/huge.png": "above the limit",
                     "bad/tiny.png": "too small", "broken.png": "broken link"})
    return expected


def predict(inp: Path, out: Path, weights: Path, *extra) -> int:
    args = ["predict", str(inp), "--out", str(out), "--weights", str(weights), "--workers", "2", "--batch-size", "3",
            "--quiet", *extra]
    return main(args)


def summary(out: Path) -> tuple[list[dict], list[dict]]:
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]


@pytest.fixture
def messy(tmp_path, test_split):
    root = tmp_path / "in"
    return root, make_messy(root, test_split[0])


def test_messy_folder(messy, tiny_weights, tmp_path):
    root, expected = messy
    before, out = snapshot(root), tmp_path / "out"
    assert predict(root, out, tiny_weights) == 1  # some files are bad
    assert snapshot(root) == before  # INPUT byte-for-byte untouched, nothing created inside it
    rows, jrows = summary(out)
    assert [r["file"] for r in rows] == [r["file"] for r in jrows] and len(rows) == len(expected)
    for row, jrow in zip(rows, jrows):
        want = expected[row["file"]]
        assert (row["status"] == OK) if want == OK else (want in row["status"] and row["status"].startswith("error"))
        assert jrow["status"] == row["status"]
        if want != OK:
            assert not row["mask"] and not jrow["digits"]
            continue
        with Image.open(root / row["file"]) as im:
            w, h = ImageOps.exif_transpose(im).size
        assert (int(row["width"]), int(row["height"])) == (jrow["width"], jrow["height"]) == (w, h)
        with Image.open(out / row["mask"]) as m:
            assert m.mode == "P" and m.size == (w, h) and m.getpalette()[:33] == flat_palette()[:33]
        classes = read_mask(out / row["mask"])
        assert classes.shape == (h, w) and classes.dtype == np.uint8 and classes.max() <= 10
        with Image.open(out / row["overlay"]) as o:
            assert o.mode == "RGB" and o.size == (w, h)
        assert len(jrow["areas"]) == len(jrow["confidences"]) == len(jrow["digits"].split())
        want = round(float(np.prod(jrow["confidences"])), 4) if jrow["confidences"] else None
        assert len(jrow["alternatives"]) == len(jrow["alternative_confidences"]) == len(jrow["confidences"])
        assert all(a != int(d) for a, d in zip(jrow["alternatives"], jrow["digits"].split()))
        assert jrow["confidence"] == pytest.approx(want, abs=2e-4) if want is not None else jrow["confidence"] is None
        assert row["areas"] == " ".join(map(str, jrow["areas"]))
    by_file = {r["file"]: r for r in rows}
    assert by_file["a/b/paper.jpg"]["inverted"] == "True" and by_file["top.png"]["inverted"] == "False"
    assert by_file["scan.png"]["mask"] == "masks/scan.png.png" and by_file["scan.jpg"]["mask"] == "masks/scan.jpg.png"
    assert by_file["a/rgba.png"]["overlay"] == "overlays/a/rgba.png"
    assert not (out / "masks" / "scan.png").exists() and not list(out.rglob("*.tmp"))
    umask = os.umask(0o22)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in out.rglob("*") if p.is_file())


def test_out_defaults_to_runs_predict(tmp_path, test_split, tiny_weights, monkeypatch):
    root = tmp_path / "scans"
    clean_folder(root, test_split[0][:2])
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(root), "--weights", str(tiny_weights), "--quiet"]) == 0
    assert len(summary(tmp_path / "runs" / "predict" / "scans")[0]) == 2


def test_rerun_changes_nothing_resume_keeps_overwrite_redoes(messy, tiny_weights, tmp_path, capsys):
    root, _ = messy
    out = tmp_path / "out"
    assert predict(root, out, tiny_weights) == 1
    first = snapshot(out)
    assert predict(root, out, tiny_weights) == 2  # without --overwrite: refused, not one byte changed
    assert "--overwrite" in capsys.readouterr().err and snapshot(out) == first
    assert predict(root, out, tiny_weights, "--resume") == 1  # the bad files are retried, still bad
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k.endswith(".png")} == {
        k: v for k, v in first.items() if k.endswith(".png")}
    assert after["summary.csv"][0] == first["summary.csv"][0]
    (out / "masks" / "top.png").unlink()
    (out / "overlays" / "wide.png").write_bytes(first["overlays/wide.png"][0][:100])  # as after a power cut
    assert predict(root, out, tiny_weights, "--resume") == 1
    assert (out / "masks" / "top.png").read_bytes() == first["masks/top.png"][0]
    assert (out / "overlays" / "wide.png").read_bytes() == first["overlays/wide.png"][0]
    assert snapshot(out)["overlays/top.png"] == first["overlays/top.png"]  # only missing or cut outputs are written
    assert predict(root, out, tiny_weights, "--overwrite") == 1
    redone = snapshot(out)
    assert redone["masks/top.png"][0] == first["masks/top.png"][0] and redone["masks/top.png"][1] != first[
        "masks/top.png"][1]


def clean_folder(root: Path, imgs: np.ndarray, copies: int = 1) -> None:
    for c in range(copies):
        for i, img in enumerate(imgs):
            save(root / f"part{c % 3}" / f"c{c}_{i:03d}.png", Image.fromarray(img))


def valid_pngs(out: Path) -> int:
    """Asserts every PNG in OUT decodes completely; returns how many there are."""
    pngs = list(out.rglob("*.png"))
    for p in pngs:
        with Image.open(p) as im:
            im.load()
    return len(pngs)


def test_ctrl_c_then_resume_equals_clean_run(tmp_path, test_split, tiny_weights, monkeypatch):
    root = tmp_path / "in"
    clean_folder(root, test_split[0])
    assert predict(root, tmp_path / "ref", tiny_weights, "--amp", "off") == 0
    real, calls, lock = segapp.predict.write_outputs, [0], threading.Lock()

    def interrupt_at_10(*args):
        with lock:
            calls[0] += 1
            if calls[0] == 10:
                raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(segapp.predict, "write_outputs", interrupt_at_10)
    out = tmp_path / "out"
    assert predict(root, out, tiny_weights, "--amp", "off") == 130
    rows, _ = summary(out)
    assert 0 < len(rows) < 40 and all((out / r["mask"]).is_file() for r in rows)
    assert valid_pngs(out) >= 2 * len(rows) and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert predict(root, out, tiny_weights, "--amp", "off", "--resume") == 0
    ref_rows, ref_json = summary(tmp_path / "ref")
    rows, jrows = summary(out)
    assert [r["file"] for r in rows] == [r["file"] for r in ref_rows] and all(r["status"] == OK for r in rows)
    for r, ref in zip(jrows, ref_json):
        assert np.array_equal(read_mask(out / r["mask"]), read_mask(tmp_path / "ref" / ref["mask"]))
    finished = snapshot(out)
    assert predict(root, out, tiny_weights, "--resume") == 0 and snapshot(out) == finished  # nothing left to do


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_process_then_resume(sig, tmp_path, test_split, tiny_weights):
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, test_split[0], copies=5)  # 200 files
    cmd = [sys.executable, "-m", "segapp.cli", "--threads", "1", "predict", str(root), "--out", str(out),
           "--weights", str(tiny_weights), "--workers", "1", "--batch-size", "2", "--quiet"]
    before = snapshot(root)
    # A shell that starts the test suite in the background hands it SIGINT ignored; give Ctrl-C back to the child.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_rows(out, 20, 60, lambda: proc.poll() is None)
    proc.send_signal(sig)
    assert proc.wait(60) == (130 if sig == signal.SIGINT else -signal.SIGKILL)  # stopped mid-run, not finished
    assert snapshot(root) == before
    for p in out.rglob("*.png"):  # whatever got a real name is a complete PNG
        with Image.open(p) as im:
            im.load()
    assert predict(root, out, tiny_weights, "--resume") == 0
    rows, jrows = summary(out)
    assert len(rows) == len({r["file"] for r in jrows}) == 200 and all(r["status"] == OK for r in rows)
    assert valid_pngs(out) == 400 and not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("case, message", [
    ("out_inside_input", "inside INPUT"),
    ("empty_folder", "no image files"),
    ("missing_input", "no such file"),
    ("missing_weights", "weights not found"),
    ("zero_batch", "at least 1"),
    ("out_is_a_file", "is a file"),
])
def test_usage_errors_exit_2(case, message, tmp_path, test_split, tiny_weights, capsys):
    root = tmp_path / "in"
    clean_folder(root, test_split[0][:2])
    out, weights, extra = tmp_path / "out", tiny_weights, []
    if case == "out_inside_input":
        out = root / "part0" / "results"
    elif case == "empty_folder":
        root = tmp_path / "empty"
        root.mkdir()
    elif case == "missing_input":
        root = tmp_path / "nope"
    elif case == "missing_weights":
        weights = tmp_path / "no_weights"
    elif case == "zero_batch":
        extra = ["--batch-size", "0"]
    else:
        out = root / "part0" / "c0_000.png"
    before = snapshot(tmp_path)
    assert main(["predict", str(root), "--out", str(out), "--weights", str(weights), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and len(err) == 1
    if case != "missing_weights":  # weights are loaded after OUT is checked; nothing else may appear
        assert snapshot(tmp_path) == before


def test_single_file_and_options(messy, tiny_weights, tmp_path):
    root, _ = messy
    out = tmp_path / "one"
    assert predict(root / "a" / "b" / "paper.jpg", out, tiny_weights, "--no-overlays") == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "args.json", "masks/paper.png", "summary.csv", "summary.jsonl"]
    args = json.loads((out / "args.json").read_text())
    assert args["overlays"] is False and args["out"] == str(out.resolve()) and args["files"] == 1
    rows, _ = summary(out)
    assert [(r["file"], r["overlay"], r["status"]) for r in rows] == [("paper.jpg", "", OK)]
    out = tmp_path / "top"
    assert predict(root, out, tiny_weights, "--no-recursive") == 1  # broken.png is at the top
    assert {r["file"] for r in summary(out)[0]} == {"top.png", "Upper.PNG", "scan.png", "scan.jpg", "wide.png",
                                                    "broken.png"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_and_folder(tmp_path, test_split, tiny_weights):
    root = tmp_path / "in"
    clean_folder(root, test_split[0][:3])
    (root / "part0" / "c0_001.png").chmod(0)
    (root / "locked").mkdir()
    (root / "locked").chmod(0)
    try:
        assert predict(root, tmp_path / "out", tiny_weights) == 1
    finally:
        (root / "locked").chmod(0o755)
    status = {r["file"]: r["status"] for r in summary(tmp_path / "out")[0]}
    assert "permission denied" in status["part0/c0_001.png"] and "cannot list folder" in status["locked"]
    assert status["part0/c0_000.png"] == OK


def test_pipe_is_reported_not_read(tmp_path, test_split, tiny_weights):
    root = tmp_path / "in"
    clean_folder(root, test_split[0][:2])
    os.mkfifo(root / "part0" / "pipe.png")  # opening it would block forever
    assert predict(root, tmp_path / "out", tiny_weights) == 1
    assert "not a regular file" in {r["file"]: r["status"] for r in summary(tmp_path / "out")[0]}["part0/pipe.png"]


def test_model_failure_costs_one_file(tmp_path, test_split, tiny_weights, monkeypatch):
    imgs = test_split[0][:6]
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, imgs)
    real = Segmenter.net  # what predict runs each batch through

    def out_of_memory_on_4(self, inputs):
        if any(np.array_equal(n.prepared.raw, imgs[4]) for n in inputs):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, inputs)

    monkeypatch.setattr(Segmenter, "net", out_of_memory_on_4)
    assert predict(root, out, tiny_weights) == 1  # batches of 3: the batch holding image 4 is retried one by one
    status = {r["file"]: r["status"] for r in summary(out)[0]}
    assert status.pop("part0/c0_004.png").startswith("error: model failed (CUDA out of memory")
    assert set(status.values()) == {OK} and len(status) == 5


@pytest.mark.parametrize("batch_size", ["1", "5"])
def test_masks_equal_direct_inference(batch_size, tmp_path, test_split):
    """The shipped weights (a random net reads nothing, so its masks are empty: nothing coloured where nothing is
    read); batched predict equals one image at a time, and on ink the net's own argmax where it is read."""
    tiny_weights = DEFAULT_WEIGHTS
    imgs = test_split[0][:12]
    root, out = tmp_path / "in", tmp_path / "out"
    clean_folder(root, imgs)
    assert predict(root, out, tiny_weights, "--amp", "off", "--batch-size", batch_size, "--backend", "torch") == 0
    one_by_one = Segmenter(tiny_weights, InferenceConfig(amp="off", backend="torch"))
    want = np.stack([one_by_one(im).classes for im in imgs])  # the same path, one image at a time
    got = np.stack([read_mask(out / "masks" / "part0" / f"c0_{i:03d}.png") for i in range(len(imgs))])
    assert (got == want).mean() > 0.9999
    with torch.inference_mode():  # and the net's own argmax where scale normalisation leaves canvases alone
        raw, _ = load_pretrained(tiny_weights).predict(to_tensor(imgs))
    ink = imgs > 0
    # settle() gives a stroke's minority-class pixels their digit's class, so a few percent differ from the argmax
    assert (got[ink] == raw.numpy()[ink]).mean() > 0.95


def test_score_and_export(tmp_path, capsys):
    ex = tmp_path / "ex"
    folder = ["export", "--format", "folder", "--out", str(ex)]
    assert main([*folder, "--n", "6", "--style", "paper", "--image-format", "jpg"]) == 0
    assert len(list((ex / "images").glob("*.jpg"))) == len(list((ex / "truth").glob("*.png"))) == 6
    assert main([*folder, "--n", "6"]) == 2  # refuses to mix into a filled folder
    capsys.readouterr()
    assert main(["score", str(ex / "truth"), str(ex / "truth"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["miou_digits"] == 1.0
    (ex / "pred").mkdir()
    (ex / "pred" / "00000.png").write_bytes((ex / "truth" / "00000.png").read_bytes())
    assert main(["score", str(ex / "pred"), str(ex / "truth")]) == 1  # five predictions missing
    assert "no predicted mask" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.safetensors").is_file(), reason="no shipped weights")
def test_real_weights_match_evaluate(tmp_path, capsys):
    """Masks written by predict score like `segapp evaluate` on the same images (the issue's first bar, small)."""
    ex, out = tmp_path / "ex", tmp_path / "out"
    assert main(["export", "--format", "folder", "--out", str(ex), "--n", "100"]) == 0
    assert main(["predict", str(ex / "images"), "--out", str(out), "--no-overlays", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["score", str(out / "masks"), str(ex / "truth"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["miou_digits"]
    assert main(["evaluate", "--limit", "100", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)["miou_digits"]
    assert abs(scored - evaluated) < 0.01


@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.safetensors").is_file(), reason="no shipped weights")
def test_predict_reads_every_image_as_the_demo_does(tmp_path, test_split):
    """Mixed digit sizes and borderline size estimates need several passes of the net: predict must read them by
    the same path as the demo and evaluate (it once ran such an image's net on a 1x1 blank and wrote an empty
    mask)."""
    import cv2

    images, _ = test_split
    big = cv2.resize(images[1], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # digits ~80 px
    mixed = np.zeros((big.shape[0] + 80, big.shape[1]), np.uint8)
    mixed[:64, :84] = images[0]  # M2NIST-sized digits (~20 px) above them
    mixed[80:] = big
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(mixed).save(inp / "mixed.png")
    for i in range(3):
        Image.fromarray(images[2 + i]).save(inp / f"plain{i}.png")
    seg = Segmenter(DEFAULT_WEIGHTS, InferenceConfig(device="cpu"))
    assert seg.needs_more_than_one_pass(seg.preprocess(prepare(mixed)))
    assert predict(inp, tmp_path / "out", DEFAULT_WEIGHTS) == 0
    for name in ("mixed", "plain0", "plain1", "plain2"):
        want = seg(inp / f"{name}.png").classes
        assert (want < 10).sum() > 100  # digits found: the comparison means something
        np.testing.assert_array_equal(read_mask(tmp_path / "out" / "masks" / f"{name}.png"), want)



@pytest.mark.skipif(not (DEFAULT_WEIGHTS / "model.safetensors").is_file(), reason="no shipped weights")
@pytest.mark.parametrize("review_below", [0.0, 1.01])
def test_unsure_readings_are_counted_at_the_end(test_split, tmp_path, capsys, monkeypatch, review_below):
    """The closing lines say how many readings have a confidence under REVIEW_BELOW (here moved to flag none, then
    every reading), so a user knows which to check first; a run with none unsure says nothing of it."""
    import segapp.classes
    import segapp.predict

    monkeypatch.setattr(segapp.classes, "REVIEW_BELOW", review_below)  # the rule (classes.needs_review) ...
    monkeypatch.setattr(segapp.predict, "REVIEW_BELOW", review_below)  # ... and the figure the message names
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(4):
        Image.fromarray(test_split[0][i]).save(inp / f"{i}.png")
    assert predict(inp, tmp_path / "out", DEFAULT_WEIGHTS) == 0
    _, jrows = summary(tmp_path / "out")
    assert all(0 < r["confidence"] <= 1 for r in jrows)  # M2NIST canvases: every one has digits read
    err = capsys.readouterr().err
    if review_below > 1:
        assert f"4 of 4 readings have a confidence under {review_below}" in err
    else:
        assert "confidence under" not in err

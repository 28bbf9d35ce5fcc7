"""The bad-input table of docs/reliability.md, run through both user paths, plus the demo under load.

Every case goes through `segapp predict` (all in one folder, one run) and through the demo's upload handler
(`segapp.demo_answer.analyse_upload`, what the UI and the `segment` endpoint call). Both must agree: a correct result
at the input's (EXIF-corrected) size, or a one-line error naming the file and the reason. No traceback, no crash,
no input file modified.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from imagefiles import png_claiming
from PIL import Image

import segapp.images
from benchmarks import loadtest
from segapp.cli import main
from segapp.demo_answer import analyse_upload
from segapp.images import AVIF, HEIF
from segapp.inference import Segmenter

OK = "ok"  # the summary status of a file that worked


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def digits(h: int = 64, w: int = 84) -> np.ndarray:
    """A white-on-black image with a few bright strokes (content is irrelevant here, only decoding)."""
    a = np.zeros((h, w), np.uint8)
    a[h // 4 : 3 * h // 4, w // 3 : w // 3 + max(1, w // 12)] = 255
    return a


def animated_gif() -> bytes:
    frames = [Image.fromarray(digits()), Image.fromarray(255 - digits())]
    return png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 84 wide x 64 high, displayed rotated: 64 wide x 84 high
    return png_bytes(Image.fromarray(digits()), "JPEG", quality=95, exif=exif)


# name -> (bytes, expected: "ok" with (width, height) or the reason the error must contain)
CASES: dict[str, tuple[bytes, str | tuple[int, int]]] = {
    "zero_bytes.png": (b"", "empty file"),
    "text_named.png": (b"hello, I am a text file\n", "not an image"),
    "truncated.png": (png_bytes(Image.fromarray(digits()))[:80], "corrupt or truncated"),
    "truncated.jpg": (png_bytes(Image.fromarray(digits()), "JPEG", quality=90)[:300], "corrupt or truncated"),
    "bomb_100000x100000.png": (png_claiming(100_000, 100_000), "above the limit"),
    "gray16.png": (png_bytes(Image.fromarray(digits().astype(np.uint16) * 257)), (84, 64)),
    "rgba_transparent.png": (png_bytes(Image.fromarray(np.dstack([np.zeros((64, 84, 3), np.uint8), digits()]),
                                                       "RGBA")), (84, 64)),
    "palette.png": (png_bytes(Image.fromarray(digits()).convert("P")), (84, 64)),
    "one_by_one.png": (png_bytes(Image.fromarray(np.zeros((1, 1), np.uint8))), "too small"),
    "three_by_two.png": (png_bytes(Image.fromarray(np.zeros((2, 3), np.uint8))), "too small"),
    "wide_16x4000.png": (png_bytes(Image.fromarray(digits(16, 4000))), (4000, 16)),
    "exif_rotated.jpg": (exif_rotated_jpeg(), (64, 84)),
    "animated.gif": (animated_gif(), (84, 64)),
    "locked.png": (png_bytes(Image.fromarray(digits())), "permission denied"),
    # PostScript under an image name: Pillow would hand it to Ghostscript; segapp reads raster formats only
    "postscript.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 84 64\nnewpath 0 0 moveto 84 64 lineto stroke\n"
                       b"showpage\n", "not an image"),
}
for fmt, ext in (("HEIF", "heic"), ("AVIF", "avif")):  # phone formats, where this Pillow reads them
    if fmt in HEIF + AVIF:
        phone = png_bytes(Image.fromarray(np.dstack([digits()] * 3)), fmt, quality=90)
        CASES[f"phone.{ext}"] = (phone, (84, 64))
        CASES[f"truncated.{ext}"] = (phone[: len(phone) // 2], "corrupt or truncated")
LINKS = {"loop.png": ("loop.png", "link loop"), "dangling.png": ("missing.png", "broken link")}  # name: target, reason


@pytest.fixture
def locked_is_unreadable(monkeypatch):
    """``locked.png`` cannot be opened, as a file without read permission (tests run as root, who may read all)."""

    def fake_open(path, *args, **kwargs):
        if Path(path).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(segapp.images, "open", fake_open, raising=False)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for name, (content, _) in CASES.items():
        (root / name).write_bytes(content)
    for name, (target, _) in LINKS.items():
        os.symlink(target, root / name)
    return root


def snapshot(root: Path) -> dict:
    return {p.name: (os.readlink(p),) if p.is_symlink() else (p.read_bytes(), p.stat().st_mtime_ns)
            for p in root.iterdir()}


def test_predict_handles_every_case_and_leaves_input_alone(folder, tiny_weights, tmp_path, locked_is_unreadable):
    before, out = snapshot(folder), tmp_path / "out"
    code = main(["predict", str(folder), "--out", str(out), "--weights", str(tiny_weights), "--quiet"])
    assert code == 1  # documented: 1 when any file failed, and the run still finished
    assert snapshot(folder) == before
    with open(out / "summary.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(CASES) | set(LINKS)
    for name, (_, expected) in CASES.items():
        row = rows[name]
        if isinstance(expected, tuple):
            assert row["status"] == OK, (name, row["status"])
            assert (int(row["width"]), int(row["height"])) == expected
            with Image.open(out / row["mask"]) as m:
                assert m.size == expected and m.mode == "P"
        else:
            assert row["status"].startswith("error") and expected in row["status"], (name, row["status"])
            assert "\n" not in row["status"] and not row["mask"]
    for name, (_, reason) in LINKS.items():
        assert rows[name]["status"].startswith("error") and reason in rows[name]["status"], name
    assert not list(out.rglob("*.tmp"))


@pytest.fixture(scope="module")
def tiny_model(tiny_weights):
    """The demo's inference path (a Segmenter) on the tiny test weights."""
    return Segmenter(tiny_weights)


@pytest.mark.parametrize("name", sorted(CASES))
def test_demo_upload_handles_every_case(name, folder, tiny_model, locked_is_unreadable):
    _, expected = CASES[name]
    if isinstance(expected, tuple):
        r = analyse_upload(tiny_model, str(folder / name), 0.6)
        assert r.seg.classes.shape[::-1] == expected and r.overlay.shape == (*expected[::-1], 3)
        assert (r.summary["width"], r.summary["height"]) == expected
    else:
        with pytest.raises(gr.Error) as e:
            analyse_upload(tiny_model, str(folder / name), 0.6)
        msg = e.value.message
        assert name in msg and expected in msg and "\n" not in msg and "Traceback" not in msg


@pytest.mark.parametrize("name", sorted(LINKS))
def test_demo_path_refuses_links_to_nowhere(name, folder, tiny_model):
    with pytest.raises(gr.Error) as e:
        analyse_upload(tiny_model, str(folder / name), 0.6)
    assert name in e.value.message and LINKS[name][1] in e.value.message and "\n" not in e.value.message


def test_pasted_bytes_take_the_same_path(tiny_model):
    for name, (content, expected) in CASES.items():
        if name == "locked.png":
            continue
        if isinstance(expected, tuple):
            assert analyse_upload(tiny_model, content, 0.6).seg.classes.shape[::-1] == expected
        else:
            with pytest.raises(gr.Error, match=expected):
                analyse_upload(tiny_model, content, 0.6)


@pytest.mark.slow
def test_demo_under_concurrent_clients_serves_every_request_and_refuses_oversize():
    """A short version of ``python -m benchmarks.loadtest`` (32 clients x 30 s is the documented run)."""
    r = loadtest.run(clients=6, seconds=4)
    assert r["requests"] >= 6 and r["failed"] == 0, r["errors"]
    assert r["oversize_upload"]["refused"], r["oversize_upload"]
    assert r["rss_mb"]["after"] < r["rss_mb"]["before"] + 300


@pytest.mark.slow
def test_same_result_for_many_concurrent_requests_is_never_half_written(tmp_path):
    """80 users sending the same example get the same result image: Gradio's cache file for it must never be seen
    half-written (it used to be rewritten in place per request: h11 Content-Length errors under load)."""
    import threading

    from gradio import processing_utils

    import segapp.demo_gradio

    segapp.demo_gradio.serve_results_once()  # as build_app does
    assert processing_utils.save_pil_to_cache is segapp.demo_gradio._save_result_once
    picture = (np.random.default_rng(0).random((400, 600, 3)) * 255).astype(np.uint8)
    seen, lock = [], threading.Lock()

    def user() -> None:
        for _ in range(10):
            path = processing_utils.save_img_array_to_cache(picture, str(tmp_path), format="png")
            data = Path(path).read_bytes()
            with lock:
                seen.append((path, data))

    threads = [threading.Thread(target=user) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p for p, _ in seen}) == 1 and len({d for _, d in seen}) == 1  # one file, always complete
    assert seen[0][1].endswith(b"IEND\xaeB`\x82")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["image.png"]  # no temp files left

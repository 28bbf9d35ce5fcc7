"""Hand-made image files and folder snapshots shared by the tests (a plain module: pytest puts tests/ on sys.path)."""

import os
import stat
import struct
import time
import zlib
from pathlib import Path

import matplotlib
import numpy as np

from segapp.classes import BACKGROUND
from segapp.m2nist import load_mnist

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"  # DejaVu and STIX faces: on every machine segapp runs


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (links not followed) with its bytes and modification time, keyed by its path
    relative to ``root`` (non-UTF-8 names as Python's surrogate escapes); pipes and devices are never read."""
    snap = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                snap[rel] = (os.readlink(p),)
            elif stat.S_ISREG(st.st_mode):
                snap[rel] = (p.read_bytes(), st.st_mtime_ns)
            else:  # folders, pipes, sockets, devices
                snap[rel] = (st.st_mtime_ns,)
    return snap


def summary_rows(out: Path) -> int:
    """Rows `segapp predict` has appended to OUT/summary.jsonl so far (0 before the file exists)."""
    jsonl = out / "summary.jsonl"
    return jsonl.read_bytes().count(b"\n") if jsonl.exists() else 0


def wait_for_rows(out: Path, n: int, seconds: float, running) -> None:
    """Waits until a running job (``running()`` true) has written ``n`` summary rows, or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and running() and summary_rows(out) < n:
        time.sleep(0.01)


def mnist_line(digits: tuple[int, ...] = (3, 7, 2, 5, 0)) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST test digits (the first of each class in the test file) side by side on one baseline, white on black:
    (image, class map with the strokes over a quarter of full ink, text)."""
    images, labels = load_mnist("test")
    picks = [int(np.nonzero(labels == d)[0][0]) for d in digits]
    img = np.zeros((48, 16 + 24 * len(picks)), np.uint8)
    lab = np.full(img.shape, BACKGROUND, np.uint8)
    for k, i in enumerate(picks):
        img[10:38, 8 + 24 * k : 36 + 24 * k] = np.maximum(img[10:38, 8 + 24 * k : 36 + 24 * k], images[i])
        view = lab[10:38, 8 + 24 * k : 36 + 24 * k]
        view[images[i] > 64] = labels[i]
    return img, lab, " ".join(str(d) for d in digits)


def tilted_photo(ink: np.ndarray) -> np.ndarray:
    """White-on-black ink as a light-grey photo of dark ink (what a phone gives, without its blur and noise)."""
    return 235 - (ink.astype(np.float32) * 0.8).astype(np.uint8)

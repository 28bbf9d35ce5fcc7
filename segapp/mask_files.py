"""Class map <-> mask file: the indexed palette PNG segapp writes, and the one rule for every mask it reads.

A mask file is a class-index PNG with segapp's palette embedded (pixel value = class, 0-9 the digit, 10
background), so it opens as a colour picture and reads back as indices. `segapp predict` and `segapp export` write
them (:func:`mask_png`, :func:`save_mask`); `segapp score`, `evaluate --data` and `train --data` read them
(:func:`read_mask`). Apart from reading digits (:mod:`segapp.render`) and overlays (:mod:`segapp.overlays`) because
it is a file format: its bytes must stay the same whatever the rest does.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import NUM_CLASSES, PALETTE, VOID, SegappError, flat_palette

_PLTE = bytes(flat_palette())  # a mask PNG's palette chunk: 256 entries, as Pillow writes it


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray, palette: bytes | None = None, compress_level: int = 1) -> bytes:
    """An 8-bit PNG of a (H, W) gray or indexed image (``palette``: the PLTE chunk) or (H, W, 3) RGB image.

    What Pillow writes for these images (no filter, one IDAT at the given zlib level; for masks the same bytes),
    in a few calls instead of Pillow's per-chunk Python: per file its cost is a tenth of the net's, for a
    64x84 canvas a quarter of it went to encoding its two PNGs."""
    h, w = image.shape[:2]
    rows = np.zeros((h, 1 + w * (image.shape[2] if image.ndim == 3 else 1)), np.uint8)  # filter byte 0 per row
    rows[:, 1:] = image.reshape(h, -1)
    color = 2 if image.ndim == 3 else 3 if palette is not None else 0
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)),
                     _chunk(b"PLTE", palette) if palette is not None else b"",
                     _chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)), _chunk(b"IEND", b"")))


def mask_png(classes: np.ndarray, compress_level: int = 1) -> bytes:
    """Class map -> the bytes of its indexed PNG mask (what :func:`mask_image` saves), palette embedded."""
    return png_bytes(np.ascontiguousarray(classes, dtype=np.uint8), _PLTE, compress_level)


def mask_image(classes: np.ndarray) -> Image.Image:
    """Class map -> indexed ('P' mode) Pillow image whose pixel values are the class indices."""
    img = Image.fromarray(np.ascontiguousarray(classes, dtype=np.uint8), mode="P")
    img.putpalette(flat_palette())
    return img


def save_mask(path: Path | str, classes: np.ndarray) -> None:
    """Writes the class map as an 8-bit indexed PNG with the segapp palette embedded."""
    mask_image(classes).save(path, format="PNG", optimize=False)


class MaskError(SegappError, ValueError):
    """A file that is not a usable mask (unreadable, another mode or colours, a class index out of range)."""


def read_mask(path: Path | str) -> np.ndarray:
    """A mask PNG -> (H, W) uint8 class indices: 0-9 digits, 10 background, :data:`~segapp.classes.VOID` unlabelled.

    The one rule for every mask segapp reads (`segapp score`, `segapp evaluate --data`, `segapp train --data`): an
    8-bit class-index PNG (mode P or L: what `segapp predict` and `segapp export` write, pixel value = class), or an
    RGB(A) picture painted in segapp's palette (black = background), which is converted. Anything else (another
    mode, colours not in the palette, an index out of range) raises :class:`MaskError`; a missing file raises
    ``FileNotFoundError``.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "L"):
                m = np.asarray(img, np.uint8).copy()
            elif img.mode in ("RGB", "RGBA"):
                m = from_colours(np.asarray(img.convert("RGB")), path)
            else:
                raise MaskError(f"{path}: mask mode {img.mode}; save it as an 8-bit class-index PNG")
    except (MaskError, FileNotFoundError):
        raise
    except (OSError, ValueError) as e:
        raise MaskError(f"{path}: cannot read the mask ({e})") from None
    bad = (m >= NUM_CLASSES) & (m != VOID)
    if bad.any():
        raise MaskError(f"{path}: class index {int(m[bad][0])} out of range; masks hold 0-9 digits, 10 background, "
                        f"{VOID} void")
    return m


def from_colours(rgb: np.ndarray, path: Path | str) -> np.ndarray:
    """RGB painted in segapp's palette (black = background) -> class indices."""
    colours = np.vstack([PALETTE[:10], [[0, 0, 0]]]).astype(np.int32)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    match = (flat[:, None, :] == colours[None]).all(-1)
    if not match.any(1).all():
        raise MaskError(f"{path}: an RGB mask whose colours are not segapp's palette; save class indices "
                        "(pixel value = class) as an 8-bit PNG instead")
    return match.argmax(1).astype(np.uint8).reshape(rgb.shape[:2])

"""User image files -> the model's input: safe decoding, grayscale conversion, polarity, normalisation.

Shared by the web demo and `segapp predict`, so both see an image the same way:

1. decode with Pillow, refusing files over :data:`~segapp.classes.MAX_PIXELS` *before* the pixels
   are allocated (the header is read first), applying EXIF rotation, taking the first frame of
   animations;
2. convert any mode (RGB, RGBA, LA, palette, 16-bit, float, 1-bit, CMYK) to 8-bit grayscale;
   transparent areas become background;
3. detect polarity (M2NIST is white ink on black; paper is dark ink on white) and invert if needed;
4. for anything that is not already clean M2NIST-style (exactly-zero background), subtract the
   background level, zero the residual noise and stretch the ink to the full 0-255 range.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .classes import MAX_PIXELS, SegappError
from .normalise import normalise

MIN_SIDE = 4  # smaller images hold no legible digit; refused with a clear message
try:  # HEIC/HEIF, the iPhone camera's format (a dependency; decoded by libheif inside the pillow-heif wheel)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF = ("HEIF",)
except ImportError:  # an environment installed without it still reads everything else
    HEIF = ()
AVIF = ("AVIF",) if features.check("avif") else ()  # Pillow 11.2+ decodes AVIF itself (libavif in its wheel)
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF", "TIFF", "PPM") + HEIF + AVIF  # Pillow's names; PPM: pgm/ppm/pbm
FORMAT_NAMES = ", ".join(["PNG, JPEG, BMP, WebP, GIF, TIFF, PGM/PPM/PBM"] + ["HEIC/HEIF"] * bool(HEIF)
                         + ["AVIF"] * bool(AVIF))  # for messages: what segapp reads here
PHONE_BRANDS = {b"ftyp" + b for b in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif",
                                         b"avis")}  # an ISO media file's first box, as HEIC and AVIF files start
IMAGE_EXTENSIONS = ((".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")
                    + (".heic", ".heif") * bool(HEIF) + (".avif",) * bool(AVIF))

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb guard, as a second line of defence
# Between 1x and 2x its limit Pillow only warns; check_size() then refuses the image from its header, so the
# message never depends on warning filters (segapp predict decodes in threads, and a catch_warnings() block
# there is not thread-safe: a file's error would depend on what another thread was decoding). Over 2x,
# Pillow raises before the header is returned. The warning itself is noise once check_size() has spoken.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(SegappError, ValueError):
    """An input image cannot be used; the message names the file and the reason."""


class Prepared:
    """A decoded image plus, computed on first use, its normalised form and polarity.

    ``raw`` is what was decoded, as 8-bit grayscale at the file's own size. The normalised image
    (:attr:`gray`) is only computed when asked for: the inference path works on a reduced copy of a
    big photo and never needs it at 12 megapixels.
    """

    def __init__(self, raw: np.ndarray):
        self.raw = raw  # (H, W) uint8 grayscale, the file's own pixels
        self._norm: tuple[np.ndarray, bool] | None = None
        self._inverted: bool | None = None  # known before normalising at full size: see with_polarity
        self._net: np.ndarray | None = None  # net_gray, computed on first use

    def _normalised(self) -> tuple[np.ndarray, bool]:
        if self._norm is None:
            self._norm = normalise(self.raw)
        return self._norm

    @property
    def gray(self) -> np.ndarray:
        """(H, W) uint8 white ink on black at the input's size (see :func:`segapp.normalise.normalise`)."""
        return self._normalised()[0]

    @property
    def inverted(self) -> bool:
        """True when the image is dark ink on a light background (it is inverted for the net)."""
        if self._inverted is None:
            self._inverted = self._normalised()[1]
        return self._inverted

    def with_polarity(self, inverted: bool) -> Prepared:
        """The same pixels with their polarity already known (found on a reduced copy by the inference path, which
        then never normalises a big photo at full size). A new object: this one is left as it is."""
        other = Prepared(self.raw)
        other._norm, other._inverted = self._norm, bool(inverted)
        return other

    @property
    def net_gray(self) -> np.ndarray:
        """(H, W) uint8: :attr:`gray` with the lower noise floor the net reads (``faint`` in
        :func:`segapp.normalise.normalise`)."""
        if self._net is None:
            self._net = normalise(self.raw, self.inverted, faint=True)[0]
        return self._net

    @property
    def display(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, the image as the user sees it (for overlays)."""
        return np.repeat(self.raw[..., None], 3, axis=2)

    @property
    def polarity(self) -> str:
        return "dark ink on light background (inverted)" if self.inverted else "light ink on dark background"


def file_status(path: Path, name: str) -> os.stat_result:
    """``stat`` of ``path`` following links, with dangling links and link loops as :class:`ImageError`."""
    try:
        return path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file (a broken link, or removed while segapp was running)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{name}: symbolic link loop; not followed") from None
        raise


def decode(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Opens an image file (or bytes) safely; raises :class:`ImageError` naming ``name``.

    Only the raster formats segapp supports are tried, whatever the file's name: Pillow would otherwise
    hand a PostScript/EPS file to Ghostscript, or parse any of its dozens of rarer formats.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "upload")
    head = b""
    try:
        if isinstance(source, bytes):
            if not source:
                raise ImageError(f"{name}: empty file (0 bytes)")
            fh = io.BytesIO(source)
        else:
            path = Path(source)
            st = file_status(path, name)
            if stat.S_ISDIR(st.st_mode):
                raise ImageError(f"{name}: is a folder, not an image")
            if not stat.S_ISREG(st.st_mode):  # opening a pipe would block forever
                raise ImageError(f"{name}: not a regular file (a pipe, socket or device); not read")
            if st.st_size == 0:
                raise ImageError(f"{name}: empty file (0 bytes)")
            fh = open(path, "rb")  # noqa: SIM115 - closed below once decoded
        try:
            head = fh.read(12)
            fh.seek(0)
            img = Image.open(fh, formats=FORMATS)  # never PostScript/EPS (Ghostscript) or other plugins
            check_size(*img.size, name)  # from the header, before any pixel is decoded
            img.seek(0)  # first frame of an animation
            img.load()
        finally:
            if not isinstance(source, bytes):
                fh.close()
        return img
    except ImageError:
        raise
    except UnidentifiedImageError:
        if head[4:12] in PHONE_BRANDS:  # a HEIC or AVIF container whose image its decoder could not find
            raise ImageError(f"{name}: corrupt or truncated image ({head[8:12].decode()} container)") from None
        raise ImageError(f"{name}: not an image in a format segapp reads ({FORMAT_NAMES})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning: under python -W error
        raise ImageError(
            f"{name}: above the limit of {MAX_PIXELS:,} pixels (possible decompression bomb); downscale it first"
        ) from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied; make the file readable") from None
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as e:  # RuntimeError: libavif, libheif
        raise ImageError(f"{name}: corrupt or truncated image ({str(e).strip() or type(e).__name__})") from None


def to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W) uint8 grayscale with transparent pixels set to the background."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not cost the picture itself
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        gray = np.asarray(img.convert("RGB").convert("L"), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        if alpha.min() >= 1.0:
            return gray.astype(np.uint8)
        # Ink is what is opaque; composite it onto the opposite shade so it stays visible.
        ink = float((gray * alpha).sum() / max(alpha.sum(), 1e-6))
        bg = 255.0 if ink < 128 else 0.0
        return (gray * alpha + bg * (1 - alpha)).round().astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def prepare(source: str | Path | bytes | np.ndarray | Image.Image, name: str | None = None) -> Prepared:
    """Decodes and normalises one image from a path, bytes, a Pillow image or a numpy array."""
    if isinstance(source, np.ndarray):
        gray = array_to_gray(source, name or "array")
    else:
        img = source if isinstance(source, Image.Image) else decode(source, name)
        check_size(*img.size, name or "image")
        gray = to_gray(img)
    return Prepared(gray)


def check_size(w: int, h: int, name: str) -> None:
    """Refuses images over the pixel limit or too small to hold a digit."""
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: {w}x{h} pixels is above the limit of {MAX_PIXELS:,}; downscale the image first")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: {w}x{h} pixels is too small; segapp needs at least {MIN_SIDE} px a side")


def array_to_gray(a: np.ndarray, name: str) -> np.ndarray:
    """numpy image (H, W), (H, W, 1|3|4), any integer/float/bool dtype -> (H, W) uint8."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        pass
    elif a.ndim != 2:
        raise ImageError(f"{name}: expected an image array (H, W) or (H, W, 1|3|4), got shape {a.shape}")
    check_size(a.shape[1], a.shape[0], name)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ImageError(f"{name}: unsupported pixel type {a.dtype}")
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(f.min()), float(f.max())
        if np.issubdtype(a.dtype, np.floating) and lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        a = np.zeros(f.shape, np.uint8) if hi <= lo else ((f - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if a.ndim == 2:
        return a
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return to_gray(Image.fromarray(a[..., 0] if mode == "L" else np.ascontiguousarray(a), mode))

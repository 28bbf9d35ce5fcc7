"""The web demo's request handling: one image or drawing -> what the UI and the ``segment`` API answer.

* :func:`analyse` - the pure function: image (path, bytes, array or Pillow image) -> :class:`Result` with the
  overlay, the per-digit masks and the JSON summary;
* :func:`analyse_upload` - :func:`analyse` for an upload or a drawing, an unusable image turned into a one-line
  message (``gr.Error``) instead of a traceback: what both the UI and the ``segment`` endpoint call;
* :func:`ui_answer` - every output the page shows for one image, in the order :func:`segapp.demo.build_app` wires
  them, and the HTML of the reading and the digit table.

Kept apart from the page's layout and serving (:mod:`segapp.demo`) so the logic is testable without a server.
Decoding is left to :func:`segapp.images.prepare` (size limit checked from the header, polarity detection), so a
bad upload becomes a one-line message in the UI or a ``gradio_client`` ``AppError`` and the server keeps serving.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import torch

from .classes import hex_colour, needs_review
from .images import ImageError, prepare
from .inference import Segmenter
from .overlays import legend_html, overlay
from .render import Segmentation

DEFAULT_ALPHA = 0.6  # overlay opacity; the UI slider starts here, the API always uses it
ONE_THREAD_PIXELS = 512 * 512  # net inputs up to this size run on one CPU thread (see analyse())
OVERLAY_SIDE = 2048  # overlays shown in the browser are downscaled to this longest side (display only)
MASK_SIDE = 1024  # the per-digit mask panel is downscaled to this longest side (display only)
MAX_MASKS = 24  # more digits than this: one mask per digit class instead of one per digit


MASK_TTL = 3600  # seconds a downloadable mask file is kept


@dataclass
class Result:
    """What one analysed image gives the UI and the API."""

    seg: Segmentation
    overlay: np.ndarray  # (H, W, 3) uint8, the input with digits tinted in their class colours
    seconds: float  # decode + inference + read-out

    @property
    def summary(self) -> dict:
        """The API's JSON: ``text``, its ``confidence``, ``digits`` [{digit, area, confidence, alternative,
        alternative_confidence, bbox, line}] in reading order, size, polarity."""
        return self.seg.summary()


@contextmanager
def cpu_threads(n: int | None):
    """Runs the block with ``n`` torch CPU threads (None: leave as is); model calls are serialised by the queue."""
    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def analyse(
    segmenter: Segmenter, source, alpha: float = DEFAULT_ALPHA, name: str | None = None,
    digit_height: float | None = None, rescale: bool = True,
) -> Result:
    """Image -> segmentation, coloured overlay and summary. Raises :class:`ImageError` for unusable input.

    Small images run on one CPU thread: splitting a few milliseconds of work gains little, and when another process
    holds a core, OpenMP's waiting threads turned 7 ms into 20-300 ms (measured on the 2-core demo machine).
    """
    t0 = time.perf_counter()
    if digit_height is not None or not rescale:
        segmenter = segmenter.with_options(digit_height=digit_height, rescale=rescale)
    prepared = prepare(source, name)
    h, w = prepared.raw.shape
    with cpu_threads(1 if h * w <= ONE_THREAD_PIXELS else None):
        seg = segmenter.segment([prepared])[0]
    return Result(seg, overlay(prepared.display, seg.classes, alpha), time.perf_counter() - t0)


def digit_masks(seg: Segmentation, max_side: int = MASK_SIDE) -> tuple[tuple, dict[str, str]]:
    """``gr.AnnotatedImage`` value (base image, [(mask, label)]) and its colour map, one mask per digit read.

    Labels number the digits left to right ("#2: 0"); with more than :data:`MAX_MASKS` digits there is one mask per
    class instead. Big images are downscaled for display, since Gradio writes every mask as a full-size PNG.
    """
    h, w = seg.classes.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = seg.classes if scale == 1 else cv2.resize(seg.classes, size, interpolation=cv2.INTER_NEAREST)
    base = seg.prepared.display if scale == 1 else cv2.resize(seg.prepared.display, size, interpolation=cv2.INTER_AREA)
    masks, colours = [], {}
    if len(seg.digits) <= MAX_MASKS:
        for i, d in enumerate(seg.digits, 1):
            bx0, by0, bx1, by1 = d["bbox"]
            box = np.s_[int(by0 * scale) : math.ceil(by1 * scale), int(bx0 * scale) : math.ceil(bx1 * scale)]
            m = np.zeros(small.shape, np.float32)
            m[box] = small[box] == d["digit"]
            label = f"#{i}: {d['digit']}"
            masks.append((m, label))
            colours[label] = hex_colour(d["digit"])
    else:
        for digit in sorted({d["digit"] for d in seg.digits}):
            label = f"digit {digit}"
            masks.append(((small == digit).astype(np.float32), label))
            colours[label] = hex_colour(digit)
    return (base, masks), colours


def error_html(message: str) -> str:
    """A one-line problem shown in place of the reading (``message`` is already HTML-escaped)."""
    return f'<div class="reading"><div class="error" role="alert">⚠ {message}</div></div>'


def duration(seconds: float) -> str:
    """Milliseconds below a second, seconds above (e.g. "130 ms", "2.4 s")."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def reading_html(result: Result) -> str:
    """The number read in large type (one row per text line), over one line of context: count, confidence, glyphs of
    words left out, size, assumed polarity, the estimated digit height and the scale the net saw the image at,
    time."""
    seg = result.seg
    h, w = seg.classes.shape
    count = f"{len(seg.digits)} digit{'s' * (len(seg.digits) != 1)}"
    lines = "".join(f"<div>{html.escape(line)}</div>" for line in seg.lines) or "<div>no digits found</div>"
    size = ("digit height: no ink found" if seg.digit_height is None
            else f"digits ~{seg.digit_height:.0f} px tall, seen at {seg.scale:.2f}x")
    c = seg.confidence
    sure = "" if c is None else f" · confidence {c:.2f}{' (unsure: check it)' if needs_review(c) else ''}"
    n = len(seg.words_left_out)  # glyphs of words beside the number ("Room 42": segapp/words.py) and signs
    words = f" · {n} glyph{'s' * (n != 1)} of words or signs left out" if n else ""
    return (
        f'<div class="reading"><div class="number">{lines}</div>'
        f'<div class="meta">{count}{sure}{words} · {w}×{h} px · {size} · assumed {html.escape(seg.prepared.polarity)}'
        f" · {duration(result.seconds)}</div></div>"
    )


def _alternative(d: dict) -> str:
    """A digit's likeliest other reading and its probability ("9 (0.31)"), or a dash when the net sees none."""
    alt = d.get("alternative")
    return "–" if alt is None else f"{alt} ({d['alternative_confidence']:.2f})"


def table_html(result: Result) -> str:
    """One row per digit read, in reading order: colour, digit, line, area, mean confidence, the likeliest other
    digit, bounding box."""
    rows = "".join(
        f'<tr><td>{i}</td><td><span class="swatch" style="background:{hex_colour(d["digit"])}"></span>{d["digit"]}</td>'
        f'<td>{d["line"] + 1}</td><td class="wide">{d["area"]}</td><td>{d["confidence"]:.3f}</td>'
        f'<td class="wide">{_alternative(d)}</td>'
        f'<td class="wide">{", ".join(map(str, d["bbox"]))}</td></tr>'
        for i, d in enumerate(result.seg.digits, 1)
    )
    head = ('<tr><th>#</th><th>digit</th><th>line</th><th class="wide">area (px)</th><th>confidence</th>'
            '<th class="wide">or else</th><th class="wide">box x0, y0, x1, y1</th></tr>')
    return f'<div class="reading"><table>{head}{rows}</table></div>' if rows else ""


def analyse_upload(segmenter: Segmenter, source, alpha: float, digit_height: float | None = None,
                   rescale: bool = True) -> Result:
    """:func:`analyse` for an upload or a drawing, with unusable images turned into a message the UI shows."""
    if source is None:
        raise gr.Error("No image: upload, paste, photograph or draw one first.", title="No image")
    if isinstance(source, dict):  # a Sketchpad value: the drawing is the composite of its layers
        source = source.get("composite")
        if source is None or not np.asarray(source).any():
            raise gr.Error("The drawing is empty: draw a number first.", title="No image")
        name = "drawing"
    else:
        name = Path(source).name if isinstance(source, str) else "pasted image"
    try:
        return analyse(segmenter, source, alpha, name, digit_height=digit_height, rescale=rescale)
    except ImageError as e:
        raise gr.Error(html.escape(str(e)), title="Cannot use this image", print_exception=False) from None


def _height_option(value) -> float | None:
    """The UI's digit-height box: 0 or empty means "estimate"."""
    try:
        v = float(value or 0)
    except (TypeError, ValueError):
        return None
    if v and not 2 <= v <= 100_000:
        raise gr.Error(f"Digit height {v:g} px: give the height of one digit in the image (2 px or more), "
                       "or 0 to estimate it.", title="Bad option")
    return v or None


def shown(image: np.ndarray, max_side: int = OVERLAY_SIDE) -> np.ndarray:
    """The overlay as sent to the browser: a 12-megapixel photo's is reduced (encoding and sending it would take
    seconds); the downloadable mask keeps the input's full size."""
    h, w = image.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def write_mask_file(classes: np.ndarray) -> str:
    """The class-index mask as an indexed PNG in a fresh temp file (one per request: no two requests share it)."""
    from .mask_files import mask_image

    folder = Path(tempfile.gettempdir()) / "segapp-demo"
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.glob("mask-*.png"):  # masks served over an hour ago: the page that showed them is stale
        try:
            if now - old.stat().st_mtime > MASK_TTL:
                old.unlink()
        except OSError:  # another request removed it first
            pass
    fd, path = tempfile.mkstemp(prefix="mask-", suffix=".png", dir=folder)
    with os.fdopen(fd, "wb") as f:
        mask_image(classes).save(f, format="PNG")
    return path


def ui_answer(segmenter: Segmenter, image, alpha: float, rescale: bool, height) -> tuple:
    """What the UI shows for one image or drawing, in the order of ``build_app``'s outputs (overlay, reading, digit
    table, per-digit masks, summary, re-blend state, legend, mask file).

    A cleared input or a refused image blanks every output, so nothing of the previous image stays on screen; a
    refusal's message goes where the answer would have been.
    """
    if image is None:  # cleared input
        return None, "", "", gr.update(value=None), None, None, legend_html(), None
    try:
        r = analyse_upload(segmenter, image, alpha, _height_option(height), rescale)
    except gr.Error as e:
        return None, error_html(e.message), "", gr.update(value=None), None, None, legend_html(), None
    masks, colours = digit_masks(r.seg)
    present = {d["digit"] for d in r.seg.digits}
    state = (r.seg.prepared.display, r.seg.classes)
    masks = gr.update(value=masks, color_map=colours)
    return (shown(r.overlay), reading_html(r), table_html(r), masks, r.summary, state, legend_html(present),
            write_mask_file(r.seg.classes))

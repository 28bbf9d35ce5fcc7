"""The web demo behind ``app.py``: upload an image, see every digit's mask in its own colour and the number read.

Three layers, so the logic is testable without a server:

* :func:`analyse` - the pure function: image (path, bytes, array or Pillow image) -> :class:`Result` with the
  overlay, the per-digit masks and the JSON summary;
* :func:`build_app` - the Gradio UI plus two API endpoints, ``segment`` (one image -> overlay image + summary)
  and ``ping`` (returns "ok"; a health check and the no-op floor of ``python -m segapp.demo_bench``);
* :func:`main` - loads the model once, then serves with the queue and upload limits of :data:`LAUNCH_KWARGS`.
  Host and port come from Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860).

Decoding is left to :func:`segapp.images.prepare` (size limit checked from the header, polarity detection), so a
bad upload becomes a one-line message in the UI or a ``gradio_client`` ``AppError`` and the server keeps serving.
"""

from __future__ import annotations

import base64
import html
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import torch
from gradio import component_meta, processing_utils

from .classes import MAX_PIXELS, MIN_DIGIT_AREA, hex_colour
from .data import to_tensor
from .images import ImageError, Prepared, prepare
from .model import WeightsError, load_pretrained
from .render import Segmentation, legend_html, overlay, read_digits, segment

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "examples"
DEFAULT_ALPHA = 0.6  # overlay opacity; the UI slider starts here, the API always uses it
TILE = 1024  # images with more than TILE x TILE pixels run in tiles, so memory stays bounded (~1 GB)
ONE_THREAD_PIXELS = 512 * 512  # smaller images run on one CPU thread (see infer())
MASK_SIDE = 1024  # the per-digit mask panel is downscaled to this longest side (display only)
MAX_MASKS = 24  # more digits than this: one mask per digit class instead of one per digit
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach segapp
MODEL_CONCURRENCY = 1  # model calls at once: torch already spreads one over all cores; more would contend
LIGHT_CONCURRENCY = 4  # other events (opacity re-blend, ping) need no model and run beside it
QUEUE_SIZE = 64  # waiting events beyond this are told the queue is full
STATE_TTL = 1800  # seconds a session's last class map is kept for the opacity slider
CACHE_CLEANUP = (3600, 3600)  # every hour, delete Gradio's cached uploads/results older than an hour
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
.reading .number { font-size: 3.2em; font-weight: 700; letter-spacing: 0.12em; line-height: 1.2; }
.reading .meta { opacity: 0.75; margin-bottom: 0.6em; }
.reading table { border-collapse: collapse; width: 100%; }
.reading th, .reading td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #8884; }
.reading .swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: middle;
                   margin-right: 6px; }
"""
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(EXAMPLES_DIR)], "css": CSS}
INTRO = f"""# segapp: handwritten digit segmentation
Upload, paste or pick an image of handwritten digits (PNG, JPEG, BMP, WebP; any size up to {MAX_PIXELS:,} pixels;
white ink on black like MNIST, or dark ink on paper). A network of dilated convolutions with **no downsampling**
labels every pixel at the image's own resolution; each digit is overlaid in its class colour and the number is read
left to right. Blobs under {MIN_DIGIT_AREA} pixels are ignored as specks.
"""


@dataclass
class Result:
    """What one analysed image gives the UI and the API."""

    seg: Segmentation
    overlay: np.ndarray  # (H, W, 3) uint8, the input with digits tinted in their class colours
    seconds: float  # decode + inference + read-out

    @property
    def summary(self) -> dict:
        """The API's JSON: ``text``, ``digits`` [{digit, area, confidence, bbox}] left to right, size, polarity."""
        return self.seg.summary()


def infer(
    model: torch.nn.Module, prepared: Prepared, device: torch.device | str = "cpu", tile: int = TILE
) -> Segmentation:
    """Runs the model at the image's own resolution; big images go through in overlapping tiles.

    Each tile carries a margin of the receptive field's radius, so every kept output pixel sees exactly the input
    it would see in one full-image pass; the result equals the untiled one while peak memory stays per-tile.
    Small images use one CPU thread: splitting a few milliseconds of work gains little, and when another process
    holds a core, OpenMP's waiting threads turned 7 ms into 20-300 ms (measured on the 2-core demo machine).
    """
    h, w = prepared.gray.shape
    with cpu_threads(1 if h * w <= ONE_THREAD_PIXELS else None):
        if h * w <= tile * tile:
            return segment(model, prepared, device)
        return _infer_tiled(model, prepared, device, tile)


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


def _infer_tiled(model: torch.nn.Module, prepared: Prepared, device: torch.device | str, tile: int) -> Segmentation:
    h, w = prepared.gray.shape
    r = (model.receptive_field() - 1) // 2
    classes, conf = np.empty((h, w), np.uint8), np.empty((h, w), np.float32)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0, y1, x1 = max(0, y - r), max(0, x - r), min(h, y + tile + r), min(w, x + tile + r)
            c, f = model.predict(to_tensor(prepared.gray[y0:y1, x0:x1]).to(device))
            core = np.s_[y - y0 : min(y + tile, h) - y0, x - x0 : min(x + tile, w) - x0]
            classes[y : y + tile, x : x + tile] = c[0].cpu().numpy()[core]
            conf[y : y + tile, x : x + tile] = f[0].float().cpu().numpy()[core]
    return Segmentation(classes, conf, prepared, read_digits(classes, conf))


def analyse(
    model: torch.nn.Module, source, alpha: float = DEFAULT_ALPHA, device: torch.device | str = "cpu",
    name: str | None = None,
) -> Result:
    """Image -> segmentation, coloured overlay and summary. Raises :class:`ImageError` for unusable input."""
    t0 = time.perf_counter()
    seg = infer(model, prepare(source, name), device)
    return Result(seg, overlay(seg.prepared.display, seg.classes, alpha), time.perf_counter() - t0)


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


def reading_html(result: Result) -> str:
    """The number read, in large type, over one line of context (count, size, assumed polarity, time)."""
    seg = result.seg
    h, w = seg.classes.shape
    count = f"{len(seg.digits)} digit{'s' * (len(seg.digits) != 1)}"
    return (
        f'<div class="reading"><div class="number">{html.escape(seg.text) or "no digits found"}</div>'
        f'<div class="meta">{count} · {w}×{h} px · assumed {html.escape(seg.prepared.polarity)}'
        f" · {result.seconds * 1000:.0f} ms</div></div>"
    )


def table_html(result: Result) -> str:
    """One row per digit read, left to right: colour, digit, area, mean confidence, bounding box."""
    rows = "".join(
        f'<tr><td>{i}</td><td><span class="swatch" style="background:{hex_colour(d["digit"])}"></span>{d["digit"]}</td>'
        f'<td>{d["area"]}</td><td>{d["confidence"]:.3f}</td><td>{", ".join(map(str, d["bbox"]))}</td></tr>'
        for i, d in enumerate(result.seg.digits, 1)
    )
    head = "<tr><th>#</th><th>digit</th><th>area (px)</th><th>mean confidence</th><th>box x0, y0, x1, y1</th></tr>"
    return f'<div class="reading"><table>{head}{rows}</table></div>' if rows else ""


def _save_result_once(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Replaces Gradio's ``processing_utils.save_pil_to_cache``, which writes every result image (the overlay, the
    per-digit masks) to a file named after the hash of its bytes, rewriting that file in place on every request.
    When many users get the same result at once (the same example image), one request served the file while another
    was truncating and rewriting it: h11 "Too much/little data for declared Content-Length". Here a result file is
    written once, under a temp name, and linked into place: once visible it is complete and never changes."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():
        try:
            os.utime(path)  # handed out again: restart its clock for Gradio's delete_cache
        except OSError:
            pass
        return str(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".segapp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)  # never replaces: a concurrent request may have linked the same bytes first
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: an atomic rename of identical bytes
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return str(path)


if hasattr(processing_utils, "encode_pil_to_bytes") and hasattr(processing_utils, "hash_bytes"):
    processing_utils.save_pil_to_cache = _save_result_once  # save_img_array_to_cache goes through it too


# Gradio writes a .pyi stub beside the module of every Component subclass it sees defined; keep it out of segapp.
_write_stub, component_meta.create_or_modify_pyi = component_meta.create_or_modify_pyi, lambda *args, **kwargs: None
try:

    class UploadImage(gr.Image):
        """``gr.Image`` that hands the upload to segapp undecoded: its path, or a pasted image's bytes.

        Gradio's own preprocessing opens every upload with Pillow before the app sees it, so a non-image, a truncated
        file or a decompression bomb would fail inside Gradio with a generic "Error". Passing the file on lets
        :func:`segapp.images.prepare` check the size from the header and name the problem. (A subclass, not a patched
        instance: Gradio rebuilds a session's component from its class when an example is loaded into it.)
        """

        is_template = True  # the browser renders it with Gradio's own image component

        def preprocess(self, payload) -> str | bytes | None:
            if payload is None:
                return None
            if payload.url and payload.url.startswith("data:"):
                return base64.b64decode(payload.url.split(",", 1)[1])
            return payload.path

finally:
    component_meta.create_or_modify_pyi = _write_stub


def _analyse_upload(model, device, source, alpha: float) -> Result:
    """:func:`analyse` for an upload, with unusable images turned into a message the UI shows."""
    if source is None:
        raise gr.Error("No image: upload, paste or pick one first.", title="No image")
    name = Path(source).name if isinstance(source, str) else "pasted image"
    try:
        return analyse(model, source, alpha, device, name)
    except ImageError as e:
        raise gr.Error(html.escape(str(e)), title="Cannot use this image", print_exception=False) from None


def build_app(model: torch.nn.Module, device: torch.device | str = "cpu") -> gr.Blocks:
    """The demo's Blocks (queued, not launched): the UI plus the public ``segment`` and ``ping`` endpoints."""
    model.eval()

    def segment_api(image) -> tuple[np.ndarray, dict]:
        """Segments one image: the overlay (PNG) and a summary with the digits read left to right."""
        r = _analyse_upload(model, device, image, DEFAULT_ALPHA)
        return r.overlay, r.summary

    def segment_ui(image, alpha: float):
        if image is None:  # cleared input
            return None, "", "", gr.update(value=None), None, None, legend_html()
        r = _analyse_upload(model, device, image, alpha)
        masks, colours = digit_masks(r.seg)
        present = {d["digit"] for d in r.seg.digits}
        state = (r.seg.prepared.display, r.seg.classes)
        masks = gr.update(value=masks, color_map=colours)
        return r.overlay, reading_html(r), table_html(r), masks, r.summary, state, legend_html(present)

    def reblend(state, alpha: float):
        return None if state is None else overlay(state[0], state[1], alpha)

    def ping() -> str:
        """Health check: answers "ok" without touching the model."""
        return "ok"

    examples = sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    with gr.Blocks(title="segapp: handwritten digit segmentation", analytics_enabled=False,
                   delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=2):
                image = UploadImage(type="filepath", label="Image", sources=["upload", "clipboard"], height=280,
                                    elem_id="input-image", elem_classes="pixelated")
                opacity = gr.Slider(0, 1, value=DEFAULT_ALPHA, step=0.05, label="Overlay opacity")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples (click one)",
                                examples_per_page=len(examples))
            with gr.Column(scale=3):
                reading = gr.HTML(elem_id="reading")
                result = gr.Image(label="Overlay", format="png", interactive=False, height=280,
                                  elem_id="overlay", elem_classes="pixelated")
                legend = gr.HTML(legend_html())
                table = gr.HTML(elem_id="digits")
        with gr.Row():
            masks = gr.AnnotatedImage(label="Per-digit masks (hover a label)", format="png", height=280,
                                      elem_classes="pixelated")
            summary = gr.JSON(label="Summary", open=True, max_height=330)
        state = gr.State(time_to_live=STATE_TTL)  # (display, class map) for re-blending without the model

        model_events = {"concurrency_id": "model", "concurrency_limit": MODEL_CONCURRENCY}
        image.change(segment_ui, [image, opacity], [result, reading, table, masks, summary, state, legend],
                     api_visibility="private", **model_events)
        opacity.change(reblend, [state, opacity], [result], api_visibility="private", show_progress="hidden")
        # The API endpoint has no UI trigger of its own: a hidden button carries it.
        gr.Button(visible=False).click(segment_api, [image], [result, summary], api_name="segment", **model_events)
        gr.api(ping, api_name="ping")
    return app.queue(default_concurrency_limit=LIGHT_CONCURRENCY, max_size=QUEUE_SIZE)


def load_model(weights: Path | str | None = None, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Loads the weights once and warms the model up, so the first user does not pay for kernel setup."""
    model = load_pretrained(weights).to(device).eval()
    segment(model, prepare(np.zeros((64, 84), np.uint8)), device)
    return model


def no_proxy_for_localhost() -> None:
    """Adds this machine to NO_PROXY: Gradio checks its own URL at start-up with httpx, which honours HTTP(S)_PROXY,
    and a proxy (a corporate one, or a dead one on an offline machine) cannot reach our localhost."""
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(hosts + [h for h in ("localhost", "127.0.0.1", "::1") if h not in hosts])


def main(weights: Path | str | None = None, device: str = "auto") -> None:
    """Serves the demo until interrupted (``python app.py`` / ``segapp demo``)."""
    no_proxy_for_localhost()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    try:
        model = load_model(weights, dev)
    except WeightsError as e:  # one line, as the segapp command prints it, also for `python app.py`
        print(f"segapp demo: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    build_app(model, dev).launch(**LAUNCH_KWARGS)

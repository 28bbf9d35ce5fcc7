"""The web demo behind ``app.py``: upload an image, see every digit's mask in its own colour and the number read.

Three layers, so the logic is testable without a server:

* :func:`analyse` - the pure function: image (path, bytes, array or Pillow image) -> :class:`Result` with the
  overlay, the per-digit masks and the JSON summary;
* :func:`build_app` - the Gradio UI plus two API endpoints, ``segment`` (one image -> overlay image + summary)
  and ``ping`` (returns "ok"; a health check and the no-op floor of ``python -m benchmarks.demo_bench``);
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

from .classes import MAX_PIXELS, MIN_DIGIT_AREA, MIN_DIGIT_CONFIDENCE, hex_colour
from .images import ImageError, prepare
from .inference import TARGET_HEIGHT, InferenceConfig, Segmenter
from .model import WeightsError
from .overlays import legend_html, overlay
from .paths import EXAMPLES_DIR  # the example images, found in a checkout and in a wheel
from .render import Segmentation
from .safeio import write_atomic

DEFAULT_ALPHA = 0.6  # overlay opacity; the UI slider starts here, the API always uses it
ONE_THREAD_PIXELS = 512 * 512  # net inputs up to this size run on one CPU thread (see analyse())
OVERLAY_SIDE = 2048  # overlays shown in the browser are downscaled to this longest side (display only)
MASK_SIDE = 1024  # the per-digit mask panel is downscaled to this longest side (display only)
MAX_MASKS = 24  # more digits than this: one mask per digit class instead of one per digit
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach segapp
MODEL_CONCURRENCY = 1  # model calls at once: torch already spreads one over all cores; more would contend
LIGHT_CONCURRENCY = 4  # other events (opacity re-blend, ping) need no model and run beside it
QUEUE_SIZE = 256  # waiting events beyond this are told the queue is full (80 clients at once must all be served)
MASK_TTL = 3600  # seconds a downloadable mask file is kept
STATE_TTL = 1800  # seconds a session's last class map is kept for the opacity slider
CACHE_CLEANUP = (3600, 3600)  # every hour, delete Gradio's cached uploads/results older than an hour
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
.reading .number { font-size: 3.2em; font-weight: 700; letter-spacing: 0.12em; line-height: 1.2; }
.reading .error { font-size: 1.15em; font-weight: 600; color: #b42318; padding: 0.6em 0; }
@media (max-width: 700px) {  /* phones: the answer first, above the input; the table without its wide columns */
  #answer-col { order: -1; }
  .reading .wide { display: none; }
  .reading .number { font-size: 2.4em; }
}
.reading .meta { opacity: 0.75; margin-bottom: 0.6em; }
.reading table { border-collapse: collapse; width: 100%; }
.reading th, .reading td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #8884; }
.reading .swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: middle;
                   margin-right: 6px; }
"""
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(EXAMPLES_DIR)], "css": CSS}
INTRO = f"""# segapp: handwritten digit segmentation
Upload, paste, photograph or **draw** digits (PNG, JPEG, BMP, WebP; any size up to {MAX_PIXELS:,} pixels; white ink
on black like MNIST, or dark ink on paper). A network of dilated convolutions with **no downsampling** labels every
pixel; each digit is overlaid in its class colour and the number is read line by line, left to right.
The image is first resized so its digits are about {TARGET_HEIGHT:.0f} px tall, the size the network was trained
on: a 12-megapixel phone photo reaches the network as a few hundred pixels and returns in seconds (at most
1.5 megapixels ever reach it). Specks under {MIN_DIGIT_AREA} pixels at that scale, and blobs the network is less
than {MIN_DIGIT_CONFIDENCE:.0%} sure of, are ignored.
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
    """The number read in large type (one row per text line), over one line of context: count, size, assumed
    polarity, the estimated digit height and the scale the net saw the image at, time."""
    seg = result.seg
    h, w = seg.classes.shape
    count = f"{len(seg.digits)} digit{'s' * (len(seg.digits) != 1)}"
    lines = "".join(f"<div>{html.escape(line)}</div>" for line in seg.lines) or "<div>no digits found</div>"
    size = ("digit height: no ink found" if seg.digit_height is None
            else f"digits ~{seg.digit_height:.0f} px tall, seen at {seg.scale:.2f}x")
    return (
        f'<div class="reading"><div class="number">{lines}</div>'
        f'<div class="meta">{count} · {w}×{h} px · {size} · assumed {html.escape(seg.prepared.polarity)}'
        f" · {duration(result.seconds)}</div></div>"
    )


def table_html(result: Result) -> str:
    """One row per digit read, in reading order: colour, digit, line, area, mean confidence, bounding box."""
    rows = "".join(
        f'<tr><td>{i}</td><td><span class="swatch" style="background:{hex_colour(d["digit"])}"></span>{d["digit"]}</td>'
        f'<td>{d["line"] + 1}</td><td class="wide">{d["area"]}</td><td>{d["confidence"]:.3f}</td>'
        f'<td class="wide">{", ".join(map(str, d["bbox"]))}</td></tr>'
        for i, d in enumerate(result.seg.digits, 1)
    )
    head = ('<tr><th>#</th><th>digit</th><th>line</th><th class="wide">area (px)</th><th>confidence</th>'
            '<th class="wide">box x0, y0, x1, y1</th></tr>')
    return f'<div class="reading"><table>{head}{rows}</table></div>' if rows else ""


def _save_result_once(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Replaces Gradio's ``processing_utils.save_pil_to_cache``, which writes every result image (the overlay, the
    per-digit masks) to a file named after the hash of its bytes, rewriting that file in place on every request.
    When many users get the same result at once (the same example image), one request served the file while another
    was truncating and rewriting it: h11 "Too much/little data for declared Content-Length". Here a result file is
    written once, under a temp name, and linked into place (:func:`segapp.safeio.write_atomic` with
    ``replace=False``): once visible it is complete and never changes."""
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
    write_atomic(path, data, replace=False)  # never replaces: a concurrent request may have placed the same bytes
    return str(path)


def serve_results_once() -> None:
    """Makes Gradio write each result image once (:func:`_save_result_once`) instead of rewriting it per request.

    This replaces ``gradio.processing_utils.save_pil_to_cache`` (``save_img_array_to_cache`` goes through it too) for
    the whole process, so it is done when an app is built (:func:`build_app`), not when segapp.demo is imported;
    doing it again changes nothing. A Gradio without the helpers it uses keeps its own function.
    """
    if hasattr(processing_utils, "encode_pil_to_bytes") and hasattr(processing_utils, "hash_bytes"):
        processing_utils.save_pil_to_cache = _save_result_once


# Gradio writes a .pyi stub beside the module of every Component subclass it sees defined; keep it out of segapp
# (switched off while UploadImage is defined, then restored: nothing of Gradio stays changed by the import).
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

        def example_payload(self):
            """The API page's example input: a digit image of ours, not Gradio's bus picture."""
            from gradio_client import handle_file

            return handle_file(str(EXAMPLES_DIR / "m2nist_test_1_647.png"))

        def example_value(self):
            return str(EXAMPLES_DIR / "m2nist_test_1_647.png")

        def preprocess(self, payload) -> str | bytes | None:
            if payload is None:
                return None
            if payload.url and payload.url.startswith("data:"):
                return base64.b64decode(payload.url.split(",", 1)[1])
            return payload.path

finally:
    component_meta.create_or_modify_pyi = _write_stub


def _analyse_upload(segmenter: Segmenter, source, alpha: float, digit_height: float | None = None,
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


def _ui_answer(segmenter: Segmenter, image, alpha: float, rescale: bool, height) -> tuple:
    """What the UI shows for one image or drawing, in the order of ``build_app``'s outputs (overlay, reading, digit
    table, per-digit masks, summary, re-blend state, legend, mask file).

    A cleared input or a refused image blanks every output, so nothing of the previous image stays on screen; a
    refusal's message goes where the answer would have been.
    """
    if image is None:  # cleared input
        return None, "", "", gr.update(value=None), None, None, legend_html(), None
    try:
        r = _analyse_upload(segmenter, image, alpha, _height_option(height), rescale)
    except gr.Error as e:
        return None, error_html(e.message), "", gr.update(value=None), None, None, legend_html(), None
    masks, colours = digit_masks(r.seg)
    present = {d["digit"] for d in r.seg.digits}
    state = (r.seg.prepared.display, r.seg.classes)
    masks = gr.update(value=masks, color_map=colours)
    return (shown(r.overlay), reading_html(r), table_html(r), masks, r.summary, state, legend_html(present),
            write_mask_file(r.seg.classes))


def build_app(segmenter: Segmenter) -> gr.Blocks:
    """The demo's Blocks (queued, not launched): the UI plus the public ``segment`` and ``ping`` endpoints. Result
    images are written once each from here on (:func:`serve_results_once`)."""
    serve_results_once()

    def segment_api(image) -> tuple[np.ndarray, dict, str]:
        """Segments one image: the overlay (PNG), a summary (text in lines, digits, digit height, scale) and the
        class-index mask (8-bit indexed PNG: pixel value = class, 0-9 digits, 10 background)."""
        r = _analyse_upload(segmenter, image, DEFAULT_ALPHA)
        return shown(r.overlay), r.summary, write_mask_file(r.seg.classes)

    def segment_ui(image, alpha: float, rescale: bool, height) -> tuple:
        return _ui_answer(segmenter, image, alpha, rescale, height)

    def reblend(state, alpha: float):
        return None if state is None else shown(overlay(state[0], state[1], alpha))

    def ping() -> str:
        """Health check: answers "ok" without touching the model."""
        return "ok"

    examples = sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    with gr.Blocks(title="segapp: handwritten digit segmentation", analytics_enabled=False,
                   delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(INTRO)
        with gr.Row(elem_id="main-row"):
            with gr.Column(scale=2, min_width=300, elem_id="input-col"):
                with gr.Tabs():
                    with gr.Tab("Upload, paste or camera"):
                        image = UploadImage(type="filepath", label="Image", sources=["upload", "clipboard", "webcam"],
                                            height=280, elem_id="input-image", elem_classes="pixelated")
                    with gr.Tab("Draw", elem_id="draw-tab") as draw_tab:
                        sketch = gr.Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(600, 300),
                                              brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                                              label="Draw digits with the mouse or a finger", elem_id="sketch")
                        read = gr.Button("Read the drawing", variant="primary", elem_id="read-drawing")
                opacity = gr.Slider(0, 1, value=DEFAULT_ALPHA, step=0.05, label="Overlay opacity")
                with gr.Accordion("Scale options", open=False):
                    rescale = gr.Checkbox(True, label=f"Scale normalisation: digits reach the net about "
                                                      f"{TARGET_HEIGHT:.0f} px tall (off: it sees the image as is)")
                    height = gr.Number(0, label="Digit height in the image, px (0 = estimate from the ink)",
                                       minimum=0, precision=0)
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples (click one)",
                                examples_per_page=len(examples))
            with gr.Column(scale=3, min_width=300, elem_id="answer-col"):
                reading = gr.HTML(elem_id="reading")
                result = gr.Image(label="Overlay", format="png", interactive=False, height=280,
                                  elem_id="overlay", elem_classes="pixelated")
                legend = gr.HTML(legend_html())
                table = gr.HTML(elem_id="digits")
                mask_file = gr.File(label="Class-index mask (PNG: pixel value = class, 10 = background)",
                                    elem_id="mask-file")
        with gr.Row():
            masks = gr.AnnotatedImage(label="Per-digit masks (hover a label)", format="png", height=280,
                                      elem_classes="pixelated")
            summary = gr.JSON(label="Summary", open=True, max_height=330)
        state = gr.State(time_to_live=STATE_TTL)  # (display, class map) for re-blending without the model

        model_events = {"concurrency_id": "model", "concurrency_limit": MODEL_CONCURRENCY}
        outputs = [result, reading, table, masks, summary, state, legend, mask_file]
        image.change(segment_ui, [image, opacity, rescale, height], outputs, api_visibility="private", **model_events)
        read.click(segment_ui, [sketch, opacity, rescale, height], outputs, api_visibility="private", **model_events)
        # Gradio's editor starts with no tool selected ("select the draw tool to start"): pick the brush for the user.
        draw_tab.select(None, js="() => setTimeout(() => document.querySelector('#sketch button[aria-label=Brush]')"
                                 "?.click(), 300)")
        opacity.change(reblend, [state, opacity], [result], api_visibility="private", show_progress="hidden")
        # The API endpoint has no UI trigger of its own: a hidden button carries it.
        gr.Button(visible=False).click(segment_api, [image], [result, summary, mask_file], api_name="segment",
                                       **model_events)
        gr.api(ping, api_name="ping")
    return app.queue(default_concurrency_limit=LIGHT_CONCURRENCY, max_size=QUEUE_SIZE)


def load_segmenter(weights: Path | str | None = None, device: str = "auto", backend: str | None = None) -> Segmenter:
    """Loads the weights once and warms the model up, so the first user does not pay for kernel setup.

    ``backend`` (auto | torch | onnx; see :class:`InferenceConfig`) defaults to ``$SEGAPP_BACKEND``, else auto.
    """
    backend = backend or os.environ.get("SEGAPP_BACKEND") or "auto"
    segmenter = Segmenter(weights, InferenceConfig(device=device, backend=backend))
    analyse(segmenter, np.zeros((64, 84), np.uint8))
    return segmenter


def no_proxy_for_localhost() -> None:
    """Adds this machine to NO_PROXY: Gradio checks its own URL at start-up with httpx, which honours HTTP(S)_PROXY,
    and a proxy (a corporate one, or a dead one on an offline machine) cannot reach our localhost."""
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(hosts + [h for h in ("localhost", "127.0.0.1", "::1") if h not in hosts])


def main(weights: Path | str | None = None, device: str = "auto", host: str | None = None, port: int | None = None,
         share: bool | None = None) -> None:
    """Serves the demo until interrupted (``python app.py`` / ``segapp demo``).

    ``host`` / ``port`` default to Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (else 127.0.0.1:7860);
    ``share`` (a public gradio.live link, which needs the internet) defaults to ``$SEGAPP_SHARE`` = 1 / true.
    """
    no_proxy_for_localhost()
    try:
        segmenter = load_segmenter(weights, device)
    except WeightsError as e:  # one line, as the segapp command prints it, also for `python app.py`
        print(f"segapp demo: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if share is None:
        share = os.environ.get("SEGAPP_SHARE", "").lower() in ("1", "true", "yes")
    build_app(segmenter).launch(server_name=host, server_port=port, share=share, **LAUNCH_KWARGS)

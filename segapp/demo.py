"""The web demo behind ``app.py``: upload an image, see every digit's mask in its own colour and the number read.

Three layers, so the logic is testable without a server:

* :func:`segapp.demo_answer.analyse` - the pure function: image (path, bytes, array or Pillow image) ->
  :class:`~segapp.demo_answer.Result` with the overlay, the per-digit masks and the JSON summary (that module also
  turns one upload into everything the page shows);
* :func:`build_app` - the Gradio UI plus two API endpoints, ``segment`` (one image -> overlay image + summary)
  and ``ping`` (returns "ok"; a health check and the no-op floor of ``python -m benchmarks.demo_bench``);
* :func:`main` - loads the model once, then serves with the queue and upload limits of :data:`LAUNCH_KWARGS`.
  Host and port come from Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860).

This module is the page's layout and serving; what it changes in Gradio's file handling is
:mod:`segapp.demo_gradio`. Decoding is left to :func:`segapp.images.prepare` (size limit checked from the header,
polarity detection), so a bad upload becomes a one-line message in the UI or a ``gradio_client`` ``AppError`` and
the server keeps serving.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gradio as gr
import numpy as np

from .classes import MAX_PIXELS, MIN_DIGIT_AREA, MIN_DIGIT_CONFIDENCE
from .demo_answer import DEFAULT_ALPHA, analyse, analyse_upload, shown, ui_answer, write_mask_file
from .demo_gradio import UploadImage, serve_results_once
from .inference import TARGET_HEIGHT, InferenceConfig, Segmenter
from .model import WeightsError
from .overlays import legend_html, overlay
from .paths import EXAMPLES_DIR  # the example images, found in a checkout and in a wheel

MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach segapp
MODEL_CONCURRENCY = 1  # model calls at once: torch already spreads one over all cores; more would contend
LIGHT_CONCURRENCY = 4  # other events (opacity re-blend, ping) need no model and run beside it
QUEUE_SIZE = 256  # waiting events beyond this are told the queue is full (80 clients at once must all be served)
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
Upload, paste, photograph or **draw** digits (PNG, JPEG, HEIC, WebP; any size up to {MAX_PIXELS:,} pixels; white ink
on black like MNIST, or dark ink on paper). A network of dilated convolutions with **no downsampling** labels every
pixel; each digit is overlaid in its class colour and the number is read line by line, left to right. A digit the
network is unsure of is read a second time by a small classifier of its strokes alone, and the two readings mixed.
The image is first resized so its digits are about {TARGET_HEIGHT:.0f} px tall, the size the network was trained
on: a 12-megapixel phone photo reaches the network as a few hundred pixels and returns in seconds (at most
1.5 megapixels ever reach it). Specks under {MIN_DIGIT_AREA} pixels at that scale, and blobs the network is less
than {MIN_DIGIT_CONFIDENCE:.0%} sure of, are ignored, and so is a word beside a number ("Room" in "Room 42") that
holds a letter two small letters readers are sure of. A photo of a number held at a tilt (a line of three digits or
more, turned 8-40 degrees) is read turned upright, and its mask turned back onto the photo.
"""


def build_app(segmenter: Segmenter) -> gr.Blocks:
    """The demo's Blocks (queued, not launched): the UI plus the public ``segment`` and ``ping`` endpoints. Result
    images are written once each from here on (:func:`serve_results_once`)."""
    serve_results_once()

    def segment_api(image) -> tuple[np.ndarray, dict, str]:
        """Segments one image: the overlay (PNG), a summary (text in lines, digits, digit height, scale) and the
        class-index mask (8-bit indexed PNG: pixel value = class, 0-9 digits, 10 background)."""
        r = analyse_upload(segmenter, image, DEFAULT_ALPHA)
        return shown(r.overlay), r.summary, write_mask_file(r.seg.classes)

    def segment_ui(image, alpha: float, rescale: bool, height) -> tuple:
        return ui_answer(segmenter, image, alpha, rescale, height)

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

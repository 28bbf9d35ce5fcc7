"""Where the demo changes how Gradio handles files: uploads handed on undecoded, result images written once.

* :class:`UploadImage` - a ``gr.Image`` that passes the upload's path (or a pasted image's bytes) to segapp, so
  :func:`segapp.images.prepare` can name what is wrong with a bad file instead of Gradio failing on it;
* :func:`serve_results_once` - each result image is written once and never rewritten in place, which concurrent
  users of the same example used to see half-written.

Kept apart from the demo's own logic (:mod:`segapp.demo_answer`) and layout (:mod:`segapp.demo`) because these
reach into Gradio's internals: when Gradio changes, this is the module to re-check. Importing it changes nothing
in Gradio; :func:`serve_results_once` does, when an app is built.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import gradio as gr
from gradio import component_meta, processing_utils

from .paths import EXAMPLES_DIR  # the example images, found in a checkout and in a wheel
from .safeio import write_atomic


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
    the whole process, so it is done when an app is built (:func:`segapp.demo.build_app`), not on import;
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

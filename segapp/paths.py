"""Where segapp's shipped files are: the trained weights, the MNIST files and the demo's example images.

In a checkout they live at the top (``weights/``, ``data/mnist/``, ``data/examples/``) and ``segapp/_data/``
holds relative links to those folders; a built wheel holds copies of the files there instead (package data,
see ``pyproject.toml``). Either way they are found from ``segapp/_data/``, so an installed segapp
(``pip install .``, not editable) finds them from any directory. Where links are not checked out (git with
``core.symlinks=false``), the checkout's own folders are used.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parent.parent


def shipped(name: str, in_checkout: str) -> Path:
    """``segapp/_data/<name>`` (links resolved, so messages show the real folder), else ``<checkout>/<in_checkout>``."""
    folder = PACKAGE_DATA / name
    return folder.resolve() if folder.is_dir() else CHECKOUT / in_checkout


WEIGHTS_DIR = shipped("weights", "weights")  # config.json + model.safetensors (+ MODEL_CARD.md, metrics.json)
MNIST_DIR = shipped("mnist", "data/mnist")  # the four original MNIST .gz files
EXAMPLES_DIR = shipped("examples", "data/examples")  # the demo's example images

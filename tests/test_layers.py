"""The package's layers, lowest first: a module imports only from its own layer or the ones below it.

A newcomer reads the package bottom-up:

- core: labels, paths, safe I/O, runtime;
- imaging: decode, normalise, a page's straight lines, the ink's parts and scale, strokes, letters, masks that follow
  the ink; touching digits of one class split; the result type and the digits read (``render``), overlays, mask files;
- data: the M2NIST recipe, Kaggle pairs, torch datasets, synthetic and folder datasets, `segapp data`;
- model: the net and the digit reader, the net's ONNX graph and engines, metrics, int8;
- inference: the postprocessing at net scale and a notebook's ruled lines there, each digit's likeliest other
  reading and the reader's second opinion, the segmenter, evaluation
  (``evaluate`` sits here because training scores its epochs with it: torchvision's ``evaluate`` beside
  ``train_one_epoch``);
- training: the run's config, the engine, resume, the run's report, the job; blending, distillation; the reader's
  training job;
- app: the CLI, batch prediction (also on Ray), export, the demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_architecture import imports

PACKAGE = Path(__file__).resolve().parent.parent / "segapp"
LAYERS = {
    "core": {"__init__", "classes", "paths", "safeio", "runtime", "distributed"},
    "imaging": {"normalise", "images", "lines", "ink_parts", "scale", "tilt", "strokes", "glyphs", "ink", "split",
                "render", "overlays", "mask_files"},
    "data": {"m2nist", "kaggle", "datasets", "synth", "data", "folders"},
    "model": {"model", "reader", "context", "ink_judge", "metrics", "onnx_export", "engines", "int8", "backends"},
    "inference": {"postprocess", "ruled", "alternatives", "reread", "words", "signs", "readout", "inference",
                  "evaluate"},
    "training": {"blend", "distill", "train_config", "train_loop", "train_resume", "train_report", "train",
                 "reader_train", "context_train", "ink_judge_train"},
    "app": {"predict_inputs", "predict_plan", "predict_outputs", "predict_files", "predict", "predict_ray", "export",
            "demo_answer", "demo_gradio", "demo", "cli_train_flags", "cli_parser", "cli", "__main__"},
}
RANK = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}


def test_every_module_has_a_layer():
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(RANK)


@pytest.mark.parametrize("module", sorted(RANK))
def test_imports_flow_down_the_layers(module):
    up = {dep for dep in imports(PACKAGE / f"{module}.py") if dep in RANK and RANK[dep] > RANK[module]}
    layer = next(name for name, mods in LAYERS.items() if module in mods)
    assert not up, f"{module} ({layer}) imports from a higher layer: {sorted(up)}"

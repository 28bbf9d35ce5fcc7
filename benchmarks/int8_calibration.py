"""int8 calibration settings against float, on the robustness benchmark and the val split.

    python -m benchmarks.int8_calibration --n 100 --seed 100 '{"n": 1024}' '{"n": 1024, "percentile": 99.99}'

Each setting is JSON: keyword arguments of :func:`segapp.int8.quantize_int8` plus ``n`` (calibration images).
Prints float's figures, then per setting the val-split parity and each robustness category's (mIoU over digits,
numbers read) minus float's. Seed 100 is for development; 200 and 300 are held out. Logs of the runs behind the
shipped calibration: docs/speed/int8/.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks import robustness
from segapp.engines import OnnxEngine, TorchEngine, parity
from segapp.inference import InferenceConfig, Segmenter
from segapp.int8 import calibration_images, quantize_int8
from segapp.m2nist import make_split
from segapp.model import load_pretrained
from segapp.onnx_export import onnx_bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="JSON settings, e.g. '{\"n\": 1024, \"percentile\": 99.9999}'")
    ap.add_argument("--n", type=int, default=100, help="robustness images per category")
    ap.add_argument("--seed", type=int, default=100, help="robustness seed (100: development)")
    a = ap.parse_args()

    model = load_pretrained().eval()
    fp32 = onnx_bytes(model)
    items = {c: robustness.build(c, a.n, np.random.default_rng([a.seed, i]))
             for i, c in enumerate(robustness.CATEGORIES)}
    val_x, val_y = make_split("val", n=300)

    def score(engine) -> dict:
        seg = Segmenter(cfg=InferenceConfig(device="cpu", amp="off", backend="torch"), model=model)
        seg.engine = engine  # the whole inference path, this engine under it
        return {c: robustness.score(seg, its) for c, its in items.items()}

    ref = TorchEngine(model, torch.device("cpu"), amp=False)
    base = score(ref)
    print("float", {c: (None if c == "blank" else round(v["miou_digits"], 4), round(v["read"], 3))
                    for c, v in base.items()}, flush=True)
    for setting in a.settings:
        kw = json.loads(setting)
        t0 = time.perf_counter()
        engine = OnnxEngine(quantize_int8(fp32, calibration_images(kw.pop("n", 1024)), **kw), precision="int8")
        seconds = time.perf_counter() - t0
        val = parity({"float": ref, "int8": engine}, val_x, val_y, reference="float")["int8"]
        r = score(engine)
        d = {c: (None if c == "blank" else round(r[c]["miou_digits"] - base[c]["miou_digits"], 4),
                 round(r[c]["read"] - base[c]["read"], 3)) for c in r}
        worst = min(v[0] for v in d.values() if v[0] is not None)
        print(f"{setting}: quantized in {seconds:.0f} s; val {val}; worst {worst:+.4f}", d, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

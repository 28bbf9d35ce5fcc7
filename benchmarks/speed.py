"""Speed benchmark: the shipped dilated net and ``smp.Unet("resnet18")`` on every engine, and `segapp predict`.

    python -m benchmarks.speed                      # engines + predict, writes docs/speed.json and docs/speed.md
    python -m benchmarks.speed --skip-predict       # engines only
    python -m benchmarks.speed --passes 3 --predict-files 300 --json /tmp/s.json --md /tmp/s.md   # a quick look

**Engines** (one process, ``--threads`` threads for torch and ONNX Runtime alike, batch ``--batch`` of 64x84
M2NIST-recipe test images): every engine runs one batch per pass, passes interleaved (pass 1: all engines,
pass 2: all engines, ...) so load spikes hit every engine alike; the figure is the median of ``--passes``
passes after two warm-up calls each. The dilated net is the shipped one (``weights/``); the U-Net is
``smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=11)`` with random weights (speed does not
depend on them), zero-padded bottom/right to 64x96 (its input must be a multiple of 32) and cropped back, as in
``segapp bench``. Engines:

* torch fp32: eval mode, ``inference_mode``, channels_last;
* torch BN-folded: :class:`segapp.engines.TorchEngine` (BatchNorm folded into the convs, channels_last), as
  ``--backend torch`` runs it (dilated net only);
* torch bf16: autocast bfloat16, only when the CPU has it natively (AVX-512 BF16 / AMX);
* ONNX Runtime fp32: ``torch.onnx.export(dynamo=True)``, full graph optimisation, as ``--backend onnx`` runs it;
* ONNX Runtime int8: static QDQ quantization calibrated as ``--backend int8`` is
  (:func:`segapp.int8.calibration_images`: recipe and real-world-like training images; dilated only).

Each dilated engine's class maps are compared with torch fp32 on the batch (``identical``).

**Per-request model time** (the demo's case): one 64x84 image through :class:`segapp.inference.Segmenter`,
``--backend torch`` vs ``onnx``, median of 50 calls, interleaved.

**segapp predict**: ``--predict-files`` 64x84 M2NIST-recipe test PNGs written with Pillow, then
``segapp --threads T predict DIR --out OUT --quiet`` (masks + overlays, the defaults) with ``--backend torch``,
``onnx`` and ``auto``, alternating, ``--predict-runs`` each; the figure is the files/s the command prints (in-run:
after the model is loaded), median over runs, plus the whole command's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks.predict_ray import timed

ROOT = Path(__file__).resolve().parent.parent
MARK_BEGIN, MARK_END = "<!-- speed:begin (written by python -m benchmarks.speed) -->", "<!-- speed:end -->"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    """The CPU's model and the instruction-set flags that decide which engine is fast."""
    flags, model = set(), platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model in ("?", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    from segapp.runtime import bf16_is_fast

    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": bf16_is_fast(torch.device("cpu"))}


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "onnxruntime", "onnx", "onnxscript", "segmentation-models-pytorch"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


def width_label(widths) -> str:
    """A net's widths in a few characters: ``48`` (every layer), ``48x4+32x3`` (runs of equal layers)."""
    runs: list[list[int]] = []
    for w in widths:
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    return str(runs[0][0]) if len(runs) == 1 else "+".join(f"{w}x{n}" for w, n in runs)


def build_engines(batch: np.ndarray, log, also: tuple[Path, ...] = ()) -> dict:
    """name -> (net, engine label, callable (N,1,H,W) float tensor -> logits). ``also``: other dilated nets'
    weights (e.g. another width), each on its float engines and int8, as ``dilated-w<width>``."""
    from benchmarks.baselines import PaddedUnet
    from segapp.engines import OnnxEngine, TorchEngine
    from segapp.int8 import calibration_images, quantize_int8
    from segapp.model import load_pretrained
    from segapp.onnx_export import onnx_bytes
    from segapp.runtime import autocast, bf16_is_fast

    cpu = torch.device("cpu")
    bf16 = bf16_is_fast(cpu)
    dilated = load_pretrained().eval()
    torch.manual_seed(0)
    unet = PaddedUnet("resnet18").eval()

    def plain(model, amp: bool):
        net = model.to(memory_format=torch.channels_last)

        def run(x):
            with torch.inference_mode(), autocast(cpu, amp):
                return net(x.contiguous(memory_format=torch.channels_last)).float()

        return run

    engines = {"dilated/torch-fp32": ("dilated", "torch fp32, channels_last", plain(dilated, False)),
               "dilated/torch-folded": ("dilated", "torch fp32, BatchNorm folded (--backend torch)",
                                        TorchEngine(dilated, cpu, amp=False))}
    if bf16:
        engines["dilated/torch-bf16-unfolded"] = ("dilated", "torch bf16 autocast, channels_last (before folding)",
                                                  plain(dilated, True))
        engines["dilated/torch-bf16"] = ("dilated", "torch bf16 autocast, BatchNorm folded",
                                         TorchEngine(dilated, cpu, amp=True))
    log("exporting the dilated net to ONNX ...")
    fp32 = onnx_bytes(dilated)
    engines["dilated/onnx-fp32"] = ("dilated", "ONNX Runtime fp32 (--backend onnx)", OnnxEngine(fp32))
    log("quantizing it to int8 ...")
    int8 = quantize_int8(fp32, calibration_images())
    engines["dilated/onnx-int8"] = ("dilated", "ONNX Runtime int8 (static QDQ)", OnnxEngine(int8, precision="int8"))
    for path in also:
        other = load_pretrained(path).eval()
        net = f"dilated-w{width_label(other.config.widths)}"
        log(f"{net} ({path}): torch, ONNX fp32 and int8 ...")
        engines[f"{net}/torch"] = (net, "torch, BatchNorm folded" + (", bf16" if bf16 else ""),
                                   TorchEngine(other, cpu, amp=bf16))
        o32 = onnx_bytes(other)
        engines[f"{net}/onnx-fp32"] = (net, "ONNX Runtime fp32", OnnxEngine(o32))
        engines[f"{net}/onnx-int8"] = (net, "ONNX Runtime int8", OnnxEngine(quantize_int8(
            o32, calibration_images()), precision="int8"))
    engines["unet/torch-fp32"] = ("unet", "torch fp32, channels_last", plain(unet, False))
    if bf16:
        engines["unet/torch-bf16"] = ("unet", "torch bf16 autocast, channels_last", plain(unet, True))
    log("exporting the U-Net to ONNX ...")
    engines["unet/onnx-fp32"] = ("unet", "ONNX Runtime fp32", OnnxEngine(onnx_bytes(unet, dynamic_size=False)))
    return engines


def time_engines(engines: dict, x: torch.Tensor, passes: int, log) -> dict:
    """Seconds per batch of every engine, interleaved passes, after two warm-up calls each."""
    outputs = {}
    for name, (_, _, run) in engines.items():
        for _ in range(2):
            outputs[name] = run(x)
    times = {name: [] for name in engines}
    for p in range(passes):
        for name, (_, _, run) in engines.items():
            t0 = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - t0)
        log(f"  pass {p + 1}/{passes}: " + ", ".join(f"{k.split('/')[0][:1]}/{k.split('/')[1]} "
                                                      f"{len(x) / times[k][-1]:.0f}" for k in engines))
    ref = outputs["dilated/torch-fp32"].argmax(1)
    res = {}
    for name, (net, label, _) in engines.items():
        med = statistics.median(times[name])
        res[name] = {"net": net, "engine": label, "images_per_s": round(len(x) / med, 1),
                     "seconds_per_batch": [round(t, 4) for t in times[name]]}
        if net == "dilated":
            res[name]["identical_vs_torch_fp32"] = round(float((outputs[name].argmax(1) == ref).float().mean()), 6)
    return res


def time_requests(images: np.ndarray, calls: int) -> dict:
    """Median seconds of one 64x84 image through the Segmenter (the demo's model time), torch, onnx and int8."""
    from segapp.inference import InferenceConfig, Segmenter

    segs = {b: Segmenter(cfg=InferenceConfig(device="cpu", backend=b)) for b in ("torch", "onnx", "int8")}
    times = {b: [] for b in segs}
    for s in segs.values():
        s(images[0])
    for i in range(calls):
        for b, s in segs.items():
            t0 = time.perf_counter()
            s(images[i % len(images)])
            times[b].append(time.perf_counter() - t0)
    return {b: {"median_ms": round(1000 * statistics.median(t), 2), "amp": segs[b].amp and b == "torch"}
            for b, t in times.items()}


def measure_accuracy(n_robust: int, seed: int, log) -> dict:
    """Is each engine correct? mIoU over digits on the M2NIST-recipe test split (net level, 1000 images) and,
    through the Segmenter, on the robustness benchmark (``benchmarks.robustness``, ``n_robust`` per category)."""
    from benchmarks import robustness
    from segapp.engines import OnnxEngine, TorchEngine, parity
    from segapp.inference import InferenceConfig, Segmenter
    from segapp.int8 import calibration_images, quantize_int8
    from segapp.m2nist import make_split
    from segapp.model import load_pretrained
    from segapp.onnx_export import onnx_bytes
    from segapp.runtime import bf16_is_fast

    cpu = torch.device("cpu")
    model = load_pretrained().eval()
    fp32 = onnx_bytes(model)
    int8 = quantize_int8(fp32, calibration_images())  # as `segapp export --int8` and --backend int8 calibrate
    engines = {"torch_fp32": TorchEngine(model, cpu, amp=False), "onnx_fp32": OnnxEngine(fp32),
               "onnx_int8": OnnxEngine(int8, precision="int8")}
    if bf16_is_fast(cpu):
        engines["torch_bf16"] = TorchEngine(model, cpu, amp=True)
    images, masks = make_split("test")
    log(f"accuracy: {len(engines)} engines on {len(images)} test images")
    test = parity(engines, images, masks, reference="torch_fp32")
    robust = {}
    for name, engine in engines.items():
        seg = Segmenter(cfg=InferenceConfig(device="cpu", amp="off", backend="torch"), model=model)
        seg.engine = engine  # the same inference path, this engine under it
        robust[name] = {}
        for i, cat in enumerate(robustness.CATEGORIES):
            items = robustness.build(cat, n_robust, np.random.default_rng([seed, i]))
            r = robustness.score(seg, items)
            robust[name][cat] = {"miou_digits": None if cat == "blank" else round(r["miou_digits"], 4),
                                 "read": round(r["read"], 4)}
        log(f"  robustness {name}: " + ", ".join(f"{c} {v['miou_digits']}/{v['read']:.0%}"
                                                 for c, v in robust[name].items()))
    return {"measured_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "test": {"n_images": len(images), "results": test}, "robustness": {"n_per_category": n_robust,
            "seed": seed, "results": robust}}


def measure_predict(n_files: int, runs: int, threads: int, log) -> dict:
    """Files/s `segapp predict` prints on ``n_files`` 64x84 PNGs, --backend torch / onnx / int8 / auto, alternating."""
    from PIL import Image

    from segapp.m2nist import make_split

    images, _ = make_split("test", n=n_files)
    res = {b: {"files_per_s_in_run": [], "wall_s": []} for b in ("torch", "onnx", "int8", "auto")}
    with tempfile.TemporaryDirectory(prefix="segapp-speed-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(src / f"{i:05d}.png")
        for r in range(runs):
            for backend in res:
                out = Path(tmp) / f"out-{backend}-{r}"
                wall, rate = timed(src, out, ["--backend", backend], ["--threads", str(threads)])
                res[backend]["files_per_s_in_run"].append(round(rate, 1))
                res[backend]["wall_s"].append(round(wall, 2))
                log(f"  predict run {r + 1}/{runs} --backend {backend}: {rate:.0f} files/s in-run, "
                    f"{n_files / wall:.0f} files/s whole command")
    for v in res.values():
        v["median_files_per_s_in_run"] = round(statistics.median(v["files_per_s_in_run"]), 1)
        v["median_files_per_s_whole_command"] = round(n_files / statistics.median(v["wall_s"]), 1)
    return {"files": n_files, "size": [64, 84], "runs": runs, "threads": threads,
            "command": "segapp --threads T predict IN --out OUT --quiet --backend B (masks + overlays)",
            "results": res}


def table(doc: dict) -> str:
    """The markdown section of docs/speed.md."""
    e, cpu = doc.get("engines"), doc["cpu"]
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    when = (e or {}).get("measured_utc") or doc["finished_utc"]
    lines = [MARK_BEGIN, "", f"Measured {when} on {cpu['model']} ({cpu['cores']} cores; {flags}; "
             f"torch CPU capability {cpu['torch_cpu_capability']}, native bf16 {cpu['bf16_native']}), "
             f"{(e or {}).get('threads', doc['threads'])} threads, "
             + ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v) + "."]
    if e:
        r = e["results"]
        lines += ["", f"Batch {e['batch']} of 64x84, median of {e['passes']} interleaved passes, one process "
                  "(images/s; `identical`: class-map pixels equal to torch fp32 on the batch):", "",
                  f"| engine | shipped dilated net ({e.get('dilated_width', 48)} wide) | identical | "
                  "`smp.Unet(\"resnet18\")` | dilated / U-Net |",
                  "|---|---:|---:|---:|---:|"]
        rows = [("torch fp32, channels_last", "dilated/torch-fp32", "unet/torch-fp32"),
                ("torch, BatchNorm folded (`--backend torch --amp off`)", "dilated/torch-folded", None),
                ("torch bf16 autocast (native only; segapp's engine before this change)",
                 "dilated/torch-bf16-unfolded", "unet/torch-bf16"),
                ("torch bf16 autocast, BatchNorm folded (`--backend torch`; `auto` here without an int8 graph)",
                 "dilated/torch-bf16", None),
                ("ONNX Runtime fp32 (`--backend onnx`)", "dilated/onnx-fp32", "unet/onnx-fp32"),
                ("ONNX Runtime int8 (static QDQ; `--backend int8`; `auto` on CPUs for the shipped weights)",
                 "dilated/onnx-int8", None)]
        for label, d, u in rows:
            if d not in r and (u is None or u not in r):
                lines.append(f"| {label} | not run (no native bf16) | | | |")
                continue
            dv = r.get(d, {}).get("images_per_s")
            uv = r.get(u, {}).get("images_per_s") if u else None
            ident = r.get(d, {}).get("identical_vs_torch_fp32")
            lines.append(f"| {label} | {dv if dv is not None else '—'} | "
                         f"{f'{ident:.4%}' if ident is not None else ''} | {uv if uv is not None else '—'} | "
                         f"{f'{dv / uv:.2f}' if dv and uv else ''} |")
        best_d = max((k for k in r if k.startswith("dilated/") and k != "dilated/onnx-int8"),
                     key=lambda k: r[k]["images_per_s"])
        best_u = max((k for k in r if k.startswith("unet/")), key=lambda k: r[k]["images_per_s"])
        best_q = max((k for k in r if k.startswith("dilated/")), key=lambda k: r[k]["images_per_s"])
        lines += ["", f"Best engine each: dilated {r[best_d]['engine']} {r[best_d]['images_per_s']} vs U-Net "
                  f"{r[best_u]['engine']} {r[best_u]['images_per_s']}: **{e['best_ratio_fp']:.2f}x**"
                  + (f"; with int8 (`--backend int8`): {r[best_q]['engine']} {r[best_q]['images_per_s']}: "
                     f"**{e['best_ratio_any']:.2f}x**" if best_q != best_d else "") + "."]
        others = sorted({v["net"] for v in r.values() if v["net"].startswith("dilated-w")})
        if others:
            u = r[best_u]["images_per_s"]
            lines += ["", "Other widths of the dilated net, same run (images/s; ratio: best engine / U-Net's best):",
                      "", "| net | torch | ONNX Runtime fp32 | int8 | best float / U-Net | int8 / U-Net |",
                      "|---|---:|---:|---:|---:|---:|"]
            for n in others:
                t, f, q = (r[f"{n}/{k}"]["images_per_s"] for k in ("torch", "onnx-fp32", "onnx-int8"))
                lines.append(f"| {n.removeprefix('dilated-w')} wide | {t} | {f} | {q} | {max(t, f) / u:.2f} | "
                             f"{q / u:.2f} |")
    if doc.get("requests"):
        q = doc["requests"]
        lines += ["", "One 64x84 image through `Segmenter` (the demo's model time per request, preprocessing and "
                  f"read-out included), median of {doc['requests_calls']} calls: --backend torch "
                  f"{q['torch']['median_ms']} ms{' (bf16)' if q['torch']['amp'] else ''}, --backend onnx "
                  f"{q['onnx']['median_ms']} ms" + (f", --backend int8 {q['int8']['median_ms']} ms." if "int8" in q
                                                     else ".")]
    if doc.get("predict"):
        p = doc["predict"]
        lines += ["", f"`segapp predict` on {p['files']} 64x84 PNGs (masks + overlays), {p['threads']} threads, "
                  f"median of {p['runs']} alternating runs:", "",
                  "| backend | files/s in-run (printed by predict) | files/s whole command | runs (in-run) |",
                  "|---|---:|---:|---|"]
        for b, v in p["results"].items():
            lines.append(f"| `--backend {b}` | {v['median_files_per_s_in_run']} | "
                         f"{v['median_files_per_s_whole_command']} | {', '.join(map(str, v['files_per_s_in_run']))} |")
    if doc.get("accuracy"):
        acc = doc["accuracy"]
        t, rb = acc["test"]["results"], acc["robustness"]["results"]
        names = list(t)
        cats = [c for c in next(iter(rb.values()))]
        lines += ["", f"Accuracy of each engine (not timed, {acc.get('measured_utc', '')}): mIoU over digits on "
                  "the M2NIST-recipe test split "
                  f"({acc['test']['n_images']} images, the net alone; `identical`: class-map pixels equal to torch "
                  f"fp32), and through `Segmenter` on the robustness benchmark (`benchmarks.robustness`, held-out "
                  f"seed {acc['robustness']['seed']}, {acc['robustness']['n_per_category']} images per category; "
                  "mIoU digits / numbers read exactly):", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
                  "| test mIoU digits | " + " | ".join(f"{t[n]['miou_digits']:.4f}" for n in names) + " |",
                  "| test identical pixels | " + " | ".join(f"{t[n]['identical_pixels']:.4%}" for n in names) + " |"]
        for c in cats:
            cells = []
            for n in names:
                v = rb[n][c]
                cells.append(("—" if v["miou_digits"] is None else f"{v['miou_digits']:.4f}") + f" / {v['read']:.0%}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", MARK_END])


def write_md(path: Path, section: str) -> None:
    """Replaces the marked section of ``path`` (appends it, or creates the file, when there is none)."""
    text = path.read_text() if path.is_file() else "# Speed\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--requests", type=int, default=50, help="single-image Segmenter calls per backend (0: not timed)")
    ap.add_argument("--predict-files", type=int, default=2000)
    ap.add_argument("--predict-runs", type=int, default=3)
    ap.add_argument("--accuracy", action="store_true",
                    help="also score every engine on the test split and the robustness benchmark (slow, not timed)")
    ap.add_argument("--robust-n", type=int, default=50, help="robustness images per category for --accuracy")
    ap.add_argument("--robust-seed", type=int, default=200, help="robustness seed for --accuracy (200, 300: held out)")
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--also", type=Path, nargs="*", default=[], metavar="WEIGHTS",
                    help="other dilated nets (e.g. another width) timed beside the shipped one")
    ap.add_argument("--report-only", action="store_true", help="only rewrite --md from --json")
    ap.add_argument("--skip-predict", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "speed.json")
    ap.add_argument("--md", type=Path, default=ROOT / "docs" / "speed.md")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    def log(msg: str) -> None:
        print(f"[speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    old = json.loads(a.json.read_text()) if a.json.is_file() else {}
    if a.report_only:
        write_md(a.md, table(old))
        return 0
    doc = {"cpu": cpu_info(), "versions": versions(), "threads": a.threads, "host": platform.node(),
           "engines": old.get("engines"), "requests": old.get("requests"), "requests_calls": old.get("requests_calls"),
           "predict": old.get("predict"), "accuracy": old.get("accuracy")}
    log(f"CPU {doc['cpu']['model']}, flags {doc['cpu']['flags']}, {a.threads} threads")
    from segapp.m2nist import make_split
    from segapp.model import load_pretrained

    if not a.skip_engines:
        images = make_split("test", n=max(a.batch, 64))[0]
        x = torch.from_numpy(images[: a.batch].astype(np.float32) / 255.0)[:, None]
        engines = build_engines(images, log, tuple(a.also))
        log(f"timing {len(engines)} engines, batch {a.batch}, {a.passes} passes")
        res = time_engines(engines, x, a.passes, log)
        fp = [k for k in res if k != "dilated/onnx-int8"]
        best = {n: max((res[k]["images_per_s"] for k in keys if res[k]["net"] == n), default=0)
                for n, keys in (("dilated", fp), ("unet", fp))}
        best_any = max(res[k]["images_per_s"] for k in res if res[k]["net"] == "dilated")
        doc["engines"] = {"batch": a.batch, "size": [64, 84], "passes": a.passes, "statistic": "median",
                          "threads": a.threads,
                          "measured_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "results": res, "best_ratio_fp": round(best["dilated"] / best["unet"], 3),
                          "dilated_width": width_label(load_pretrained().config.widths),
                          "best_ratio_any": round(best_any / best["unet"], 3)}
    if a.requests > 0:
        log("timing single-image Segmenter calls (torch, onnx, int8)")
        images = make_split("test", n=max(a.batch, 64))[0]
        doc["requests"], doc["requests_calls"] = time_requests(images, a.requests), a.requests
    if a.accuracy:
        doc["accuracy"] = measure_accuracy(a.robust_n, a.robust_seed, log)
    if not a.skip_predict:
        log(f"segapp predict on {a.predict_files} PNGs, {a.predict_runs} runs per backend")
        doc["predict"] = measure_predict(a.predict_files, a.predict_runs, a.threads, log)
    doc["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=2) + "\n")
    section = table(doc)
    write_md(a.md, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

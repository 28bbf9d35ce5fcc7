"""Load test of the web demo: many concurrent ``gradio_client`` users for a while (docs/reliability.md).

    .venv/bin/python -m benchmarks.loadtest [--clients 32] [--seconds 30] [--json FILE]

Starts the demo server in a fresh Python on a free localhost port (as ``app.py`` serves it), warms it up, then runs
``--clients`` threads, each with its own ``gradio_client.Client``, calling ``segment`` back to back on 64x84
M2NIST-recipe test images for ``--seconds``. Half-way through, one extra client uploads a file over the demo's
size limit, which must be refused while the others keep being served. A request counts as failed when it raises,
or when its answer lacks the overlay or the summary. The server's resident memory (RSS) is read before the load
(after warm-up), at its peak and after it. Exit status 0 when no request failed and the oversize upload was
refused; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.demo_bench import busy_processes, start_server, stats, truth, write_pngs
from segapp.demo import MAX_FILE_SIZE
from segapp.m2nist import make_split

IMAGES = 64  # distinct test images the clients cycle through


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (from /proc, Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def oversize_file(folder: Path) -> Path:
    """A sparse file one MiB above the demo's upload limit (cheap to create, refused by Gradio before segapp)."""
    limit_mb = int(MAX_FILE_SIZE.removesuffix("mb"))
    path = folder / "oversize.png"
    with open(path, "wb") as f:
        f.truncate((limit_mb + 1) * 2**20)
    return path


def run(clients: int = 32, seconds: float = 30, weights: Path | None = None, same: bool = False) -> dict:
    """Runs the load test; returns the report (see the module docstring)."""
    from gradio_client import Client, handle_file

    images, masks = make_split("test", n=IMAGES)
    expected = [truth(m) for m in masks]
    proc, url = start_server(weights)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_pngs(images, Path(tmp))
            warm = Client(url, verbose=False)
            for p in paths[:5]:
                warm.predict(handle_file(str(p)), api_name="/segment")
            rss_before = rss_mb(proc.pid)
            lock, latencies, errors, wrong = threading.Lock(), [], [], [0]
            peak = rss_before
            start = threading.Barrier(clients + 1)
            stop = threading.Event()

            def user(k: int) -> None:
                try:
                    client = Client(url, verbose=False)
                except Exception as e:  # a refused connection is a failed request too
                    with lock:
                        errors.append(f"connect: {type(e).__name__}: {e}")
                    client = None
                start.wait()
                i = 0 if same else k  # same: every user sends the first image (many users clicking one example)
                while client is not None and not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        answer = client.predict(handle_file(str(paths[i % IMAGES])), api_name="/segment")
                        overlay, summary = answer[0], answer[1]  # (overlay, summary, mask file)
                        ok = Path(overlay).is_file() and isinstance(summary, dict) and "text" in summary
                        err = None if ok else f"incomplete answer: {summary!r}"[:200]
                    except Exception as e:
                        err = f"{type(e).__name__}: {e}"[:200]
                    with lock:
                        if err:
                            errors.append(err)
                        else:
                            latencies.append(time.perf_counter() - t0)
                            wrong[0] += summary["text"] != expected[i % IMAGES]
                    i += 0 if same else clients

            threads = [threading.Thread(target=user, args=(k,), daemon=True) for k in range(clients)]
            for t in threads:
                t.start()
            start.wait()
            t0 = time.monotonic()
            oversize = {"refused": False, "message": ""}
            big = oversize_file(Path(tmp))
            while (elapsed := time.monotonic() - t0) < seconds:
                peak = max(peak, rss_mb(proc.pid))
                if not oversize["message"] and elapsed >= seconds / 2:
                    try:
                        Client(url, verbose=False).predict(handle_file(str(big)), api_name="/segment")
                        oversize["message"] = "accepted"
                    except Exception as e:
                        oversize = {"refused": "maximum file size" in str(e), "message": str(e)[:200]}
                time.sleep(0.25)
            stop.set()
            for t in threads:
                t.join(120)
            wall = time.monotonic() - t0
            time.sleep(1.0)
            rss_after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    n = len(latencies) + len(errors)
    return {
        "clients": clients, "seconds": round(wall, 1), "requests": n, "failed": len(errors),
        "errors": sorted(set(errors))[:10], "requests_per_s": n / wall, "wrong_text": wrong[0],
        "latency": stats(latencies) if latencies else {}, "oversize_upload": oversize,
        "rss_mb": {"before": rss_before, "peak": peak, "after": rss_after},
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=int, default=32, help="concurrent gradio_client users")
    p.add_argument("--seconds", type=float, default=30, help="how long the load lasts")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights folder (default: the shipped weights/)%(default).0s")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--same-image", action="store_true", help="every client sends the same image")
    a = p.parse_args(argv)
    busy = busy_processes()
    r = run(a.clients, a.seconds, a.weights, a.same_image)
    r["same_image"] = a.same_image
    r["busy"] = busy
    lat, rss = r["latency"], r["rss_mb"]
    print(f"{r['clients']} clients x {r['seconds']} s: {r['requests']} requests ({r['requests_per_s']:.1f}/s), "
          f"{r['failed']} failed, {r['wrong_text']} read a different number than the truth")
    if lat:
        print(f"latency p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, max {lat['max_ms']:.0f} ms")
    print(f"server RSS before {rss['before']:.0f} MiB, peak {rss['peak']:.0f} MiB, after {rss['after']:.0f} MiB")
    over = r["oversize_upload"]
    print(f"oversize upload ({MAX_FILE_SIZE} + 1 MiB) mid-load: {'refused' if over['refused'] else 'NOT refused'}"
          f" ({over['message'][:100]})")
    for e in r["errors"]:
        print(f"  error: {e}")
    if busy:
        print("other busy processes: " + "; ".join(busy))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["failed"] == 0 and over["refused"] and r["requests"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

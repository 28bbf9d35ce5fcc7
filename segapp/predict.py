"""`segapp predict`: folders, files or quoted patterns of images -> class-index masks, overlays and a summary.

For each input ``INPUT/<rel>/<name>.<ext>`` the run writes, under OUT (with several INPUTs, ``<rel>`` is relative
to their common folder; see :func:`segapp.predict_files.gather_inputs`):

* ``masks/<rel>/<name>.png``: 8-bit indexed PNG at the input's size; pixel value = class index
  (0-9 digit, 10 background), with the segapp palette embedded (see :mod:`segapp.classes`);
* ``overlays/<rel>/<name>.png``: the input (as grayscale) with the digits coloured (``--no-overlays``);
* one row per input file in ``summary.csv`` and ``summary.jsonl``; the resolved arguments in ``args.json``.

When two inputs in one folder differ only in their extension (``scan.png``, ``scan.jpg``), each
keeps its extension in its output names (``scan.png.png``, ``scan.jpg.png``) so none replaces another.

Images are decoded and outputs encoded in a thread pool (Pillow, OpenCV and zlib release the
GIL) while the model runs on the chunk of files between them; images of the same size are batched for the
model. Every output file is written to a
temporary name and renamed into place, so an interrupted run leaves no half-written PNG. The
summary is appended to as each file finishes (so ``--resume`` works even after ``kill -9``)
and rewritten atomically, in input order, at the end of the run.
"""

from __future__ import annotations

import shlex
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

from tqdm import tqdm

from .images import ImageError, prepare
from .predict_files import FIELDS, Item, Summary, begin, row_for, write_outputs

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # usage errors (2) are SegappErrors, printed by segapp.cli


def reason(e: BaseException, item: Item) -> str:
    """One-line reason without the file name (the summary has its own column for that)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg.removeprefix(f"{item.rel}: ") if isinstance(e, ImageError) else f"{type(e).__name__}: {msg}"


def run(a) -> int:
    """`segapp predict` for the arguments ``a`` (the flags of ``segapp predict --help`` as attributes); returns the
    exit status: 0 every file ok, 1 some file failed, 130 interrupted. Bad arguments, folders or weights and a full
    disk raise :class:`segapp.classes.SegappError` / ``OSError``, which ``segapp.cli`` prints as one line (exit 2)."""
    return predict_folder(a)


def predict_folder(a) -> int:
    from .inference import InferenceConfig, Segmenter

    job = begin(a)  # arguments, folders, output names, what --resume keeps, args.json (segapp.predict_files)
    out, items, todo, done, skipped, list_errors = job.out, job.items, job.todo, job.done, job.skipped, job.list_errors
    segmenter = Segmenter(a.weights, InferenceConfig(
        rescale=a.rescale, digit_height=a.digit_height, batch_size=a.batch_size, device=a.device, amp=a.amp,
        backend=getattr(a, "backend", "auto")))
    summary = Summary(out, done)
    bar = tqdm(total=len(items), initial=len(done), unit="file", disable=a.quiet or None, dynamic_ncols=True,
               desc="predict")
    failed, t0 = 0, time.perf_counter()

    def finish(row: dict) -> None:
        nonlocal failed
        summary.add(row)
        bar.update()
        if row["status"] != "ok":
            failed += 1
            bar.write(f"segapp predict: {row['file']}: {row['status'].removeprefix('error: ')}", file=sys.stderr)

    for rel, why in list_errors.items():  # an unreadable folder is reported like a bad file
        failed += 1
        summary.add({**dict.fromkeys(FIELDS), "file": rel, "status": f"error: {why}"})
        bar.write(f"segapp predict: {rel}: {why}", file=sys.stderr)
    pool = ThreadPoolExecutor(a.workers, thread_name_prefix="segapp-predict")
    buckets: dict[tuple[int, int], list] = {}
    chunk = 4 * max(a.batch_size, a.workers)

    def load(item: Item):
        return segmenter.preprocess(prepare(item.src, item.rel))  # decode, normalise, scale: in a worker thread

    def load_all(part: list[Item]) -> list[tuple[Item, object, Exception | None]]:
        """Loads a slice of a chunk in one task (a task per file cost more in futures and thread hand-offs than
        decoding a 64x84 PNG); a bad file is kept with its exception, the others go on."""
        loaded = []
        for item in part:
            try:
                loaded.append((item, load(item), None))
            except Exception as e:  # one bad file is reported, the run goes on
                loaded.append((item, None, e))
        return loaded

    def model_failed(item: Item, e: RuntimeError) -> list:
        """Reports a file the model failed on (its row says why); nothing of it goes on to be written."""
        finish(row_for(item, out, status=f"error: model failed ({' '.join(str(e).split())[:200]})"))
        return []

    def segment(batch: list) -> list:
        """The net on one batch -> [(item, NetInput, net outputs or a Segmentation)].

        An input the net saw at its own size is postprocessed later, by a file thread beside the encoding of its
        PNGs (the model's turn is then the net alone): it needs only the net-scale class map and confidence, no
        logits, so what waits is smaller than the segmentation it becomes. A rescaled input is postprocessed here,
        as its logits are upsampled and are not kept waiting."""
        try:
            outs = segmenter.net([n for _, n in batch])
            return [(item, n, (None, small, conf) if small.shape == n.prepared.raw.shape
                     else segmenter.postprocess(n, logits, small, conf))
                    for (item, n), (logits, small, conf) in zip(batch, outs)]
        except RuntimeError as e:  # e.g. out of memory: retry one at a time, then fail only the file at fault
            if len(batch) > 1:
                return [done for one in batch for done in segment([one])]
            return model_failed(batch[0][0], e)

    def complete(item: Item, n, result) -> dict:
        """Postprocess (when the model's turn left it to a file thread) and write one file's outputs: its row."""
        if isinstance(result, tuple):
            try:
                result = segmenter.postprocess(n, *result)
            except Exception as e:  # costs this file only
                return row_for(item, out, status=f"error: reading the class map failed ({reason(e, item)})")
        return write_outputs(item, result, a, out)

    def complete_all(ready: list) -> list[dict]:
        return [complete(item, n, result) for item, n, result in ready]

    def whole(item: Item, n) -> list:
        """An input that needs several passes of the net (mixed digit sizes, a borderline size estimate): read
        by the segmenter's whole path, as the demo and evaluate read it, in the model's turn."""
        try:
            return [(item, n, segmenter.segment_inputs([n])[0])]
        except RuntimeError as e:
            return model_failed(item, e)

    def run_batch(key: tuple[int, int]) -> list:
        return segment(buckets.pop(key))

    def slices(seq: list) -> list[list]:
        """``seq`` in at most ``a.workers`` contiguous, non-empty slices: one task per file thread."""
        k = max(1, min(a.workers, len(seq)))
        return [seq[i * len(seq) // k : (i + 1) * len(seq) // k] for i in range(k)] if seq else []

    def submit_loads(part: list[Item]) -> list[Future]:
        return [pool.submit(load_all, sl) for sl in slices([item for item in part if not item.error])]

    def finish_written(block: bool) -> None:
        """Summary rows of the writes that are done (all of them when ``block``), oldest first."""
        while writing and (block or writing[0].done()):
            for row in writing.pop(0).result():
                finish(row)

    # A pipeline over chunks of files: while the model runs on chunk k (in this thread, the GIL released inside
    # ONNX Runtime / torch), the file threads decode chunk k+1 and postprocess and write chunk k-1. The pool runs
    # its tasks in order, so chunk k+1's decoding is queued before chunk k's writing and is ready first. Measured
    # (docs/speed.md): the model loses some speed to the file threads, but less than taking turns idled them.
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    writing: list[Future] = []
    interrupted = False
    try:
        loading = submit_loads(chunks[0]) if chunks else []
        for k, part in enumerate(chunks):
            for item in part:
                if item.error:
                    finish(row_for(item, out, status=f"error: {item.error}"))
            loaded = [x for f in loading for x in f.result()]
            loading = submit_loads(chunks[k + 1]) if k + 1 < len(chunks) else []
            finish_written(block=False)
            ready = []
            for item, prepared, error in loaded:
                if error is not None:
                    finish(row_for(item, out, status=f"error: {reason(error, item)}"))
                    continue
                if segmenter.needs_more_than_one_pass(prepared):
                    ready += whole(item, prepared)
                    continue
                key = prepared.image.shape  # the net's input size after scale normalisation
                buckets.setdefault(key, []).append((item, prepared))
                if len(buckets[key]) >= segmenter.batch_limit(key):
                    ready += run_batch(key)
                elif sum(map(len, buckets.values())) > chunk:  # many different sizes: run the fullest bucket
                    ready += run_batch(max(buckets, key=lambda k: len(buckets[k])))
            if k + 1 == len(chunks):
                for key in list(buckets):
                    ready += run_batch(key)
            writing += [pool.submit(complete_all, sl) for sl in slices(ready)]
        finish_written(block=True)
    except KeyboardInterrupt:
        interrupted = True
        pool.shutdown(wait=True, cancel_futures=True)
        for f in writing:  # outputs finished before the interrupt still get their summary rows
            if f.done() and not f.cancelled() and f.exception() is None:
                for row in f.result():
                    finish(row)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        summary.close([it.rel for it in items])
    seconds = time.perf_counter() - t0
    n_new = len(summary.rows) - len(done) - failed
    print(f"segapp predict: {len(summary.rows)} of {len(items)} files summarised ({n_new} predicted, {len(done)} "
          f"already done, {failed} failed{f', {skipped} non-image or hidden files skipped' if skipped else ''}) "
          f"in {seconds:.1f} s ({n_new / max(seconds, 1e-9):.0f} files/s) -> {out}", file=sys.stderr)
    if interrupted:
        where = "" if a.out else f" --out {shlex.quote(str(out))}"  # a numbered default folder: name it
        print(f"segapp predict: interrupted; run again with --resume{where} to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK

"""`segapp predict`'s writes: one file's mask and overlay, and the summary (``summary.csv`` + ``summary.jsonl``).

Every output appears atomically (:func:`segapp.safeio.write_atomic`); a failed write costs that file only, except a
full disk, which stops the run. The summary is appended per file during the run and rewritten sorted at the end,
and an earlier run's rows are what ``--resume`` trusts (:func:`read_previous`). Kept apart from deciding what to
write (:mod:`segapp.predict_files`, :mod:`segapp.predict_plan`) so the file formats can be read in one place.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

from .predict_inputs import shown
from .predict_plan import SUMMARY_CSV, SUMMARY_JSONL, Item
from .safeio import DISK_FULL, OutputError, describe, write_atomic

FIELDS = ("file", "width", "height", "text", "confidence", "lines", "digits", "areas", "confidences", "alternatives",
          "alternative_confidences", "inverted", "digit_height", "scale", "mask", "overlay", "status", "input_sha256",
          "weights_sha256")


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last 12 bytes of every complete PNG


def complete_png(path: Path) -> bool:
    """Whether ``path`` is a file ending in a PNG's IEND chunk (a cheap check for a finished output)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False


def write_outputs(item: Item, seg, out: Path, alpha: float, compress_level: int) -> dict:
    """Encodes and atomically writes one file's outputs (in a worker thread); returns its summary row. ``alpha``:
    the overlay's colour opacity; ``compress_level``: the PNGs' zlib level.

    A write that fails costs this file only (its row says why, naming the output), except a full disk, which
    stops the run with :class:`~segapp.safeio.OutputError` (every later write would fail the same way).
    """
    from .mask_files import mask_png, png_bytes
    from .overlays import overlay_gray

    path = None
    try:
        for kind, path in item.outs.items():
            if item.reuse and complete_png(path):
                continue  # vouched for by the earlier run's row for this same input and weights
            if kind == "mask":
                data = mask_png(seg.classes, compress_level)  # the bytes Pillow would write, encoded faster
            else:  # Prepared.display is the input's gray as RGB: the same pixels as overlays.overlay gives
                data = png_bytes(overlay_gray(seg.prepared.raw, seg.classes, alpha), compress_level=compress_level)
            write_atomic(path, data)
        return row_for(item, out, seg)
    except OSError as e:
        if e.errno in DISK_FULL:
            raise OutputError(describe(e, shown(str(path)))) from None
        where = shown(path.relative_to(out).as_posix()) if path is not None else "output"
        return row_for(item, out, status=f"error: {describe(e, where)}")
    except Exception as e:  # an encoder failure costs this file only
        msg = " ".join(str(e).split()) or type(e).__name__
        return row_for(item, out, status=f"error: cannot write output ({type(e).__name__}: {msg})")


def _own_file(path: Path) -> bool:
    """False when ``path`` is a link or has other hard links: appending to it could change another file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


class Summary:
    """``summary.csv`` + ``summary.jsonl``: appended per file during the run, rewritten sorted at the end."""

    def __init__(self, out: Path, rows: dict[str, dict]):
        self.out, self.rows, self.files = out, dict(rows), None
        # drop rows of files being redone and any line cut short by a kill; never append through a link
        self._replace(force=not all(_own_file(out / n) for n in (SUMMARY_CSV, SUMMARY_JSONL)))

    def _open(self, name: str):
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        return open(os.open(self.out / name, flags, 0o666), "a", encoding="utf-8", newline="")  # noqa: SIM115

    def add(self, row: dict) -> None:
        self.rows[row["file"]] = row
        if self.files is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.files = (self._open(SUMMARY_CSV), self._open(SUMMARY_JSONL))
        csv_f, json_f = self.files
        try:
            csv.writer(csv_f, lineterminator="\n").writerow(csv_values(row))
            json_f.write(json.dumps(row) + "\n")
            csv_f.flush()
            json_f.flush()
        except OSError as e:
            raise OSError(e.errno, e.strerror, shown(str(self.out / SUMMARY_CSV))) from None

    def close(self, order: list[str]) -> None:
        for f in self.files or ():
            try:
                f.close()
            except OSError:
                pass  # a full disk: the rewrite below reports it
        self.files = None
        rank = {rel: i for i, rel in enumerate(order)}
        self.rows = dict(sorted(self.rows.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
        self._replace()

    def _replace(self, force: bool = False) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        w.writerows(csv_values(r) for r in self.rows.values())
        jsonl = "".join(json.dumps(r) + "\n" for r in self.rows.values())
        for name, text in ((SUMMARY_CSV, buf.getvalue()), (SUMMARY_JSONL, jsonl)):
            path, data = self.out / name, text.encode("utf-8")
            if force or not (path.is_file() and path.read_bytes() == data):  # untouched when nothing changed
                write_atomic(path, data, fsync=True)


def csv_values(row: dict) -> list:
    """A summary row as CSV cells: lists space-separated (text lines by " | "), missing values empty, valid UTF-8."""
    cells = []
    for k in FIELDS:
        v = row.get(k)
        v = (" | " if k == "lines" else " ").join(map(str, v)) if isinstance(v, list) else "" if v is None else v
        cells.append(shown(v) if isinstance(v, str) else v)
    return cells


def read_previous(out: Path) -> dict[str, dict]:
    """Rows of an earlier run's ``summary.jsonl`` by file (a line cut short by a kill, or not UTF-8, is ignored)."""
    rows = {}
    try:
        lines = (out / SUMMARY_JSONL).read_bytes().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line.decode("utf-8"))
            rows[row["file"]] = row
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
            continue
    return rows


def row_for(item: Item, out: Path, seg=None, status: str = "ok") -> dict:
    """One summary row; ``seg`` is None for a failed file."""
    row = dict.fromkeys(FIELDS)
    row.update(file=item.rel, status=shown(status), input_sha256=item.input_sha256,
               weights_sha256=item.weights_sha256)
    if seg is not None:
        h, w = seg.classes.shape
        c = seg.confidence
        row.update(width=w, height=h, digits=seg.text, text=seg.text, lines=seg.lines, inverted=seg.prepared.inverted,
                   confidence=None if c is None else round(c, 4),
                   digit_height=None if seg.digit_height is None else round(seg.digit_height, 1),
                   scale=round(seg.scale, 4),
                   areas=[d["area"] for d in seg.digits], confidences=[d["confidence"] for d in seg.digits],
                   alternatives=[d.get("alternative") for d in seg.digits],
                   alternative_confidences=[d.get("alternative_confidence") for d in seg.digits],
                   **{k: shown(p.relative_to(out).as_posix()) for k, p in item.outs.items()})
        row["bboxes"] = [d["bbox"] for d in seg.digits]
        row["words_left_out"] = seg.words_left_out  # summary.jsonl: where a word was left out (segapp.words)
    return row

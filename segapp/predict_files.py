"""The file side of `segapp predict`: finding inputs, naming outputs, guarding INPUT, the summary files.

Kept apart from the inference pipeline in :mod:`segapp.predict` so each can be read (and tested) alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .images import IMAGE_EXTENSIONS

FIELDS = ("file", "width", "height", "digits", "areas", "confidences", "inverted", "mask", "overlay", "status")
SUMMARY_CSV, SUMMARY_JSONL = "summary.csv", "summary.jsonl"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last 12 bytes of every complete PNG


def write_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """Writes ``data`` to a hidden temp file beside ``path`` and renames it over ``path``.

    Unlike :func:`segapp.model.atomic_write` (made for checkpoints) this skips the per-file fsync,
    which costs more than encoding a small PNG and stalls for tens of milliseconds on a busy disk,
    and it creates files with the usual permissions (umask) rather than owner-only. The rename
    alone guarantees that a killed run leaves no half-written file under an output's name; after
    a power cut, ``--resume`` redoes any output that is not a complete PNG (:func:`complete_png`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def complete_png(path: Path) -> bool:
    """Whether ``path`` is a file ending in a PNG's IEND chunk (a cheap check for a finished output)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False

class UsageError(Exception):
    """A problem with the command line or the folders: one line, exit status 2."""


@dataclass
class Item:
    """One input file and where its results go."""

    src: Path
    rel: str  # path relative to INPUT, '/'-separated: the summary's `file` column
    outs: dict[str, Path] = field(default_factory=dict)  # "mask" / "overlay" -> output path
    error: str | None = None  # known before decoding (e.g. an output name clash)


def find_images(root: Path, recursive: bool = True, hidden: bool = False) -> tuple[list[Path], dict[str, str], int]:
    """Lists image files under ``root`` in sorted order, never following folder symlinks.

    Returns:
        The image paths, ``{folder relative to root: reason}`` for folders that could not be
        listed, and how many files were skipped for their extension or for being hidden.
    """
    if not root.is_dir():
        return [root], {}, 0
    files, errors, skipped = [], {}, 0

    def onerror(e: OSError) -> None:
        errors[Path(os.path.relpath(e.filename, root)).as_posix()] = f"cannot list folder ({e.strerror})"

    for folder, dirs, names in os.walk(root, onerror=onerror, followlinks=False):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith(".")) if recursive else []
        for name in sorted(names):
            if (hidden or not name.startswith(".")) and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(folder) / name)
            else:
                skipped += 1
    return files, errors, skipped


def plan(files: list[Path], root: Path, out: Path, overlays: bool) -> list[Item]:
    """Assigns output paths; inputs whose names clash keep their extension in the output name."""
    base = root if root.is_dir() else root.parent
    rels = [f.relative_to(base).as_posix() for f in files]
    stem = [r[: -len(Path(r).suffix)] if Path(r).suffix else r for r in rels]
    clashes = Counter(s.casefold() for s in stem)
    items, taken = [], {}
    for f, rel, s in zip(files, rels, stem):
        name = (rel if clashes[s.casefold()] > 1 else s) + ".png"
        item = Item(f, rel, {"mask": out / "masks" / name})
        if overlays:
            item.outs["overlay"] = out / "overlays" / name
        if name.casefold() in taken:
            item.error = f"output name {name} clashes with that of {taken[name.casefold()]}; rename one of them"
        taken.setdefault(name.casefold(), rel)
        items.append(item)
    return items


def check_folders(root: Path, out: Path, items: list[Item]) -> None:
    """Refuses any layout in which an output could land inside INPUT."""
    r, o = root.resolve(), out.resolve()
    if root.is_dir() and (o == r or o.is_relative_to(r)):
        raise UsageError(f"OUT {out} is inside INPUT {root}; segapp never writes inside INPUT, choose another OUT")
    if root.is_dir() and any(r.is_relative_to(o / sub) for sub in ("masks", "overlays")):
        raise UsageError(f"INPUT {root} is inside OUT's masks/ or overlays/ folder; choose another OUT")
    if not root.is_dir() and any(p.resolve() == r for p in items[0].outs.values()):
        raise UsageError(f"output for {root} would replace the input itself; choose another OUT")


def remove_stale_temps(out: Path) -> int:
    """Deletes the hidden ``.<name>.<random>.tmp`` files a killed run's atomic writes left in OUT."""
    removed = 0
    for top in (out / "masks", out / "overlays", out):
        for folder, dirs, names in os.walk(top):
            if top == out:
                dirs.clear()  # OUT itself holds only the summary files
            for name in names:
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


class Summary:
    """``summary.csv`` + ``summary.jsonl``: appended per file during the run, rewritten sorted at the end."""

    def __init__(self, out: Path, rows: dict[str, dict]):
        self.out, self.rows, self.files = out, dict(rows), None
        self._replace()  # drop rows of files being redone and any line cut short by a kill

    def add(self, row: dict) -> None:
        self.rows[row["file"]] = row
        if self.files is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.files = (open(self.out / SUMMARY_CSV, "a", newline=""), open(self.out / SUMMARY_JSONL, "a"))  # noqa: SIM115
        csv_f, json_f = self.files
        csv.writer(csv_f, lineterminator="\n").writerow(csv_values(row))
        json_f.write(json.dumps(row) + "\n")
        csv_f.flush()
        json_f.flush()

    def close(self, order: list[str]) -> None:
        for f in self.files or ():
            f.close()
        self.files = None
        rank = {rel: i for i, rel in enumerate(order)}
        self.rows = dict(sorted(self.rows.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
        self._replace()

    def _replace(self) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        w.writerows(csv_values(r) for r in self.rows.values())
        for name, text in ((SUMMARY_CSV, buf.getvalue()), (SUMMARY_JSONL, "".join(json.dumps(r) + "\n" for r in
                                                                                 self.rows.values()))):
            path = self.out / name
            if not (path.is_file() and path.read_bytes() == text.encode()):  # untouched when nothing changed
                write_atomic(path, text.encode(), fsync=True)


def csv_values(row: dict) -> list:
    """A summary row as CSV cells: lists space-separated, missing values empty."""
    cells = []
    for k in FIELDS:
        v = row.get(k)
        cells.append(" ".join(map(str, v)) if isinstance(v, list) else "" if v is None else v)
    return cells


def read_previous(out: Path) -> dict[str, dict]:
    """Rows of an earlier run's ``summary.jsonl`` by file (a line cut short by a kill is ignored)."""
    rows = {}
    try:
        lines = (out / SUMMARY_JSONL).read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return rows
    for line in lines:
        try:
            row = json.loads(line)
            rows[row["file"]] = row
        except (json.JSONDecodeError, TypeError, KeyError):
            continue
    return rows


def row_for(item: Item, out: Path, seg=None, status: str = "ok") -> dict:
    """One summary row; ``seg`` is None for a failed file."""
    row = dict.fromkeys(FIELDS)
    row.update(file=item.rel, status=status)
    if seg is not None:
        h, w = seg.classes.shape
        row.update(width=w, height=h, digits=seg.text, inverted=seg.prepared.inverted,
                   areas=[d["area"] for d in seg.digits], confidences=[d["confidence"] for d in seg.digits],
                   **{k: p.relative_to(out).as_posix() for k, p in item.outs.items()})
        row["bboxes"] = [d["bbox"] for d in seg.digits]
    return row

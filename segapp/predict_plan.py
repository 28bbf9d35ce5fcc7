"""`segapp predict`'s output names, and the guard that no output ever lands inside INPUT or on an input file.

Each input gets ``OUT/masks/<rel>/<name>.png`` (and an overlay of the same name), deterministic whatever order the
files are found in and unique even on a case-insensitive disk; OUT inside INPUT is refused, and an output path (or
summary, or args.json) that names or resolves to the same file as an input is refused (see docs/predict.md,
"Safety"). Kept apart from finding the inputs (:mod:`segapp.predict_inputs`) and writing the outputs
(:mod:`segapp.predict_outputs`): these are the rules that protect the user's files.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .predict_inputs import UsageError, shown
from .safeio import file_id

SUMMARY_CSV, SUMMARY_JSONL, ARGS_JSON = "summary.csv", "summary.jsonl", "args.json"


MAX_NAME_BYTES = 255  # longest file name most filesystems take


@dataclass
class Item:
    """One input file and where its results go."""

    src: Path
    rel: str  # path relative to INPUT, '/'-separated, as shown (valid UTF-8): the summary's `file` column
    outs: dict[str, Path] = field(default_factory=dict)  # "mask" / "overlay" -> output path
    error: str | None = None  # known before decoding (e.g. an output name clash)
    input_sha256: str | None = None
    weights_sha256: str | None = None
    reuse: bool = False  # an earlier row vouches for this file's outputs: complete ones are kept, not rewritten


def _tag(rel: str, n: int = 6) -> str:
    return hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def _fit(name: str, rel: str) -> str:
    """``name`` (``<something>.png``) shortened with a tag from ``rel`` if it is over :data:`MAX_NAME_BYTES`."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    tail = f"~{_tag(rel, 12)}.png".encode()
    head = raw[: MAX_NAME_BYTES - len(tail)]
    return (head + tail).decode("utf-8", "surrogateescape")


def plan(files: list[Path], root: Path, out: Path, overlays: bool) -> list[Item]:
    """Assigns output paths (``<name>.png``), deterministic whatever order files are found in.

    * inputs whose names differ only in extension or letter case (``scan.png``, ``scan.jpg``) keep their extension
      (``scan.png.png``, ``scan.jpg.png``), as does an input whose output name is a folder of other outputs
      (``x.jpg`` beside ``x.png/``);
    * names that would still be equal ignoring case (``a.png``, ``a.PNG``) each get a short tag made from the input's
      full name (``a.png~3f9a2c.png``, ``a.PNG~81b0e4.png``), so none replaces another even on a case-insensitive disk;
    * a name over 255 bytes is shortened and tagged the same way.
    """
    base = root if root.is_dir() else root.parent  # several inputs: their common folder (see gather_inputs)
    rels = [Path(os.path.relpath(f, base)).as_posix() for f in files]
    stems = [r[: -len(Path(r).suffix)] if Path(r).suffix else r for r in rels]
    same_stem = Counter(s.casefold() for s in stems)
    folders = {"/".join(parts[:i]).casefold() for r in rels for parts in [r.split("/")] for i in range(1, len(parts))}
    names = []
    for rel, stem in zip(rels, stems):
        name = stem + ".png"
        if same_stem[stem.casefold()] > 1 or name.casefold() in folders:
            name = rel + ".png"
        names.append(name)
    counts = Counter(n.casefold() for n in names)
    for i, (rel, name) in enumerate(zip(rels, names)):
        if counts[name.casefold()] > 1 or name.casefold() in folders:
            name = f"{rel}~{_tag(rel)}.png"
        folder, _, last = name.rpartition("/")
        names[i] = (folder + "/" if folder else "") + _fit(last, rel)
    items, taken, keys = [], {}, {}
    for f, rel, name in zip(files, rels, names):
        key = shown(rel)
        item = Item(f, key, {"mask": out / "masks" / name})
        if overlays:
            item.outs["overlay"] = out / "overlays" / name
        if name.casefold() in taken or name.casefold() in folders:
            item.error = (f"output name {shown(name)} clashes with that of {taken.get(name.casefold(), 'a folder')}; "
                          "rename one of them")
        elif key in keys:
            item.error = f"name shows as {key} in the summary, like that of another file; rename one of them"
        taken.setdefault(name.casefold(), key)
        keys.setdefault(key, f)
        items.append(item)
    return items


def run_files(out: Path) -> list[Path]:
    """The files of OUT that every run writes (besides masks and overlays)."""
    return [out / ARGS_JSON, out / SUMMARY_CSV, out / SUMMARY_JSONL]


def check_folders(root: Path | list[Path], out: Path, items: list[Item]) -> None:
    """Refuses any layout in which an output could land inside INPUT or on an input file.

    ``root``: the INPUT, or the list of INPUTs (folders and files). Output paths are compared with the inputs both
    as paths (links resolved) and as files (device and inode, which also catches hard links). For a single input
    file, or a clash with a summary or args.json, the run is refused; otherwise a file whose output would be an input
    is reported as failed and not processed.
    """
    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    o = Path(os.path.realpath(out))
    for folder in (r for r in roots if r.is_dir()):
        r = Path(os.path.realpath(folder))
        if o == r or o.is_relative_to(r):
            raise UsageError(f"OUT {out} is inside INPUT {folder}; segapp never writes inside INPUT, "
                             "choose another OUT")
        if any(r.is_relative_to(o / sub) for sub in ("masks", "overlays")):
            raise UsageError(f"INPUT {folder} is inside OUT's masks/ or overlays/ folder; choose another OUT")
    single_file = len(roots) == 1 and not roots[0].is_dir()
    by_path: dict[str, Item] = {}
    by_id: dict[tuple[int, int], Item] = {}
    for it in items:
        by_path[os.path.realpath(it.src)] = it
        fid = file_id(it.src)
        if fid is not None:
            by_id[fid] = it

    def input_at(p: Path) -> Item | None:
        hit = by_path.get(os.path.realpath(p))
        if hit is None and os.path.lexists(p):
            hit = by_id.get(file_id(p))
        return hit

    for p in run_files(out):
        hit = input_at(p)
        if hit is not None:
            raise UsageError(f"{shown(str(p))} would replace the input {hit.rel}; segapp never writes over an input, "
                             "choose another OUT")
    for it in items:
        for kind, p in it.outs.items():
            hit = input_at(p)
            if hit is None:
                continue
            if single_file:
                raise UsageError(f"output for {shown(str(roots[0]))} would replace the input itself; choose another "
                                 "OUT")
            it.error = (f"its {kind} output {shown(p.relative_to(out).as_posix())} would replace the input {hit.rel}; "
                        "not processed, choose another OUT")
            break


def input_ids(items: list[Item]) -> set[tuple[int, int]]:
    return {fid for it in items if (fid := file_id(it.src)) is not None}

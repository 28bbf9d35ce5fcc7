"""The file side of `segapp predict`: finding inputs, naming outputs, guarding INPUT, writing outputs, the summary.

Kept apart from the inference pipeline in :mod:`segapp.predict` so each can be read (and tested) alone. The rules
it enforces (see docs/predict.md, "Safety"):

* no output ever lands on an input: OUT inside INPUT is refused, and an output path (or summary, or args.json)
  that names or resolves to the same file as an input is refused;
* existing results are never replaced unless ``--resume`` or ``--overwrite`` says so, and only segapp's own
  temp files (:mod:`segapp.safeio`) are ever deleted;
* ``--resume`` keeps a file's results only when the summary row proves they are current: same input bytes
  (``input_sha256``) and same weights (``weights_sha256``);
* any file name works, including names that are not valid UTF-8 (shown as ``\\xNN`` in the summary).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import math
import os
import stat
import sys
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .classes import RecordedConfig, SegappError
from .images import IMAGE_EXTENSIONS
from .model import weights_fingerprint
from .safeio import DISK_FULL, HASH_HEX, OutputError, describe, file_id, file_sha256, sweep_temps, write_atomic

FIELDS = ("file", "width", "height", "text", "lines", "digits", "areas", "confidences", "inverted", "digit_height",
          "scale", "mask", "overlay", "status", "input_sha256", "weights_sha256")
SUMMARY_CSV, SUMMARY_JSONL, ARGS_JSON = "summary.csv", "summary.jsonl", "args.json"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last 12 bytes of every complete PNG
MAX_NAME_BYTES = 255  # longest file name most filesystems take


def complete_png(path: Path) -> bool:
    """Whether ``path`` is a file ending in a PNG's IEND chunk (a cheap check for a finished output)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:
        return False


class UsageError(SegappError):
    """A problem with the command line or the folders: one line, exit status 2."""


def shown(s: str) -> str:
    """``s`` as valid UTF-8 text: the bytes of a non-UTF-8 file name (kept by Python as lone surrogates)
    become ``\\xNN``, so ``b'caf\\xe9.png'`` shows as ``caf\\xe9.png`` in the summary and in messages."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def input_fingerprint(path: Path) -> str | None:
    """The ``input_sha256`` column: the first 64 bits of the SHA-256 of the input file's bytes."""
    digest = file_sha256(path)
    return digest[:HASH_HEX] if digest else None


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


def find_images(root: Path, recursive: bool = True, hidden: bool = False) -> tuple[list[Path], dict[str, str], int]:
    """Lists image files under ``root`` in sorted order, never following folder symlinks.

    Returns:
        The image paths, ``{folder relative to root (as shown): reason}`` for folders that could not be
        listed, and how many files were skipped for their extension or for being hidden.
    """
    if not root.is_dir():
        return [root], {}, 0
    files, errors, skipped = [], {}, 0

    def onerror(e: OSError) -> None:
        errors[shown(Path(os.path.relpath(e.filename, root)).as_posix())] = f"cannot list folder ({e.strerror})"

    for folder, dirs, names in os.walk(root, onerror=onerror, followlinks=False):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith(".")) if recursive else []
        for name in sorted(names):
            if (hidden or not name.startswith(".")) and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(folder) / name)
            else:
                skipped += 1
    return files, errors, skipped


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


def remove_stale_temps(out: Path, keep: set | None = None) -> int:
    """Deletes the temp files a killed run's atomic writes left in OUT (only segapp's own; never an input)."""
    return sweep_temps([out], [out / "masks", out / "overlays"], keep)


GLOB_CHARS = frozenset("*?[")
DEFAULT_OUT = Path("runs/predict")


@dataclass
class Inputs:
    """The INPUT arguments of a run, resolved (see :func:`gather_inputs`)."""

    files: list[Path]  # image files, each once, in the order given (a folder's in sorted order)
    base: Path  # the folder output names are relative to
    roots: list[Path]  # the INPUTs, globs expanded: folders among them are guarded (nothing is written inside)
    list_errors: dict[str, str]  # folders that could not be listed (relative to base, as shown): reason
    skipped: int  # non-image or hidden files skipped
    globbed: bool  # some INPUT was a pattern


def gather_inputs(inputs, recursive: bool = True, hidden: bool = False) -> Inputs:
    """Resolves INPUT arguments: a folder is searched as :func:`find_images` does; a file is read whatever its
    extension; a quoted pattern (``'scans/*.png'``, ``**`` for any depth of folders) is expanded by segapp in sorted
    order and its matches taken as folders or image files (other files skipped), unless a file of that very name
    exists. A file met twice (``'D/*.png' D/a.png``, or ``D D/sub/a.png``) is read once. Output names are relative to
    the common folder of the inputs (a folder input counting as itself, a file as its folder): one folder gives the
    names of a single-INPUT run, several stay unique and readable (``D/a.png``, ``other.png``)."""
    inputs = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    roots, matched = [], set()
    for p in inputs:
        s = str(p)
        if os.path.lexists(p) or not GLOB_CHARS & set(s):
            roots.append(p)
            continue
        opts = {"include_hidden": True} if hidden and sys.version_info >= (3, 11) else {}
        hits = sorted(glob.glob(s, recursive=True, **opts))
        if not hits:
            raise UsageError(f"{shown(s)}: no such file or folder, and no file or folder matches it as a pattern")
        roots += [Path(h) for h in hits]
        matched.update(hits)
    found: list[tuple[Path, list[Path], dict[str, str]]] = []  # (anchor, files, list errors)
    skipped = 0
    for p in roots:
        if not os.path.lexists(p):
            raise UsageError(f"{shown(str(p))}: no such file or folder")
        if p.is_dir():
            files, errors, n = find_images(p, recursive, hidden)
            found.append((p, files, errors))
            skipped += n
        elif str(p) in matched and p.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped += 1  # a pattern's match that is no image: skipped like a folder's other files
        else:
            found.append((p.parent, [p], {}))
    if not found:
        return Inputs([], Path("."), roots, {}, skipped, bool(matched))
    base = Path(os.path.commonpath([os.path.abspath(anchor) for anchor, _, _ in found]))
    files, list_errors, seen = [], {}, set()
    for anchor, some, errors in found:
        for f in some:
            key = os.path.abspath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
        prefix = Path(os.path.relpath(anchor, base)).as_posix()
        for rel, why in errors.items():
            list_errors[rel if prefix == "." else shown(prefix) + ("" if rel == "." else "/" + rel)] = why
    return Inputs(files, base, roots, list_errors, skipped, bool(matched))


def default_out(inputs: Inputs, reuse: bool = False, reserve: bool = False) -> Path:
    """``runs/predict/<name>`` for a run without --out: <name> is the INPUT's (a file's stem) or, for several INPUTs
    or a pattern, their common folder's. Taken when new; otherwise the first free of ``<name>2``, ``<name>3``, ...
    (``<name>-2`` after a name ending in a digit), as Ultralytics does. ``reuse`` (--resume/--overwrite): the last
    existing one of that sequence instead, i.e. the latest run. ``reserve``: the new folder is created here, by
    one ``mkdir`` that fails if it exists, so two runs started at the same moment never share one."""
    single = len(inputs.roots) == 1 and not inputs.globbed
    named = Path(os.path.realpath(inputs.roots[0] if single else inputs.base))
    name = named.stem if single else named.name
    first = DEFAULT_OUT / (name or "input")
    sep = "-" if first.name[-1:].isdigit() else ""
    previous, n = None, 1
    while True:
        candidate = first if n == 1 else first.with_name(f"{first.name}{sep}{n}")
        if not os.path.lexists(candidate):
            if reuse:
                return previous or candidate
            if not reserve:
                return candidate
            candidate.parent.mkdir(parents=True, exist_ok=True)
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:  # taken since the check: by another run starting now
                pass
        previous, n = candidate, n + 1


@dataclass
class Run:
    """Everything `segapp predict` settles before the first image is decoded."""

    root: Path
    out: Path
    items: list[Item]
    todo: list[Item]
    done: dict[str, dict]
    skipped: int
    list_errors: dict[str, str]


@dataclass(frozen=True)
class PredictConfig(RecordedConfig):
    """Every argument of `segapp predict` (see its ``--help``), with its defaults, checked on creation.

    ``recorded``: what args.json records besides the run's resolved input, output, file count and weights
    fingerprint. The CLI passes the command's parsed arguments (flag names, ``--threads``, argv); None records this
    config's own fields.
    """

    input: tuple[Path | str, ...] = ()  # folders, files or quoted patterns
    out: Path | str | None = None  # None: runs/predict/<name> (see default_out)
    recursive: bool = True
    hidden: bool = False
    overlays: bool = True
    alpha: float = 0.6
    compress_level: int = 1
    overwrite: bool = False
    resume: bool = False
    weights: Path | str | None = None  # None: the shipped weights/
    device: str = "auto"
    rescale: bool = True
    digit_height: float | None = None
    amp: str = "auto"
    backend: str = "auto"
    batch_size: int = 64
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    quiet: bool = False
    cluster: str = "none"  # "ray": segapp.predict_ray
    ray_address: str | None = None
    ray_cpus: int | None = None
    ray_actors: int | None = None
    recorded: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        given = [self.input] if isinstance(self.input, (str, os.PathLike)) else list(self.input)
        object.__setattr__(self, "input", tuple(given))
        for flag, value in (("--ray-cpus", self.ray_cpus), ("--ray-actors", self.ray_actors)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.batch_size < 1 or self.workers < 1:
            raise UsageError("--batch-size and --workers must be at least 1")
        alpha = self.alpha
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 <= alpha <= 1):
            raise UsageError(f"--alpha {alpha} is outside 0..1 (0: overlays show the input only, 1: solid colours)")
        self.freeze_record()


def begin(cfg: PredictConfig) -> Run:
    """Checks the folders, plans the outputs, sweeps stale temps, decides what ``--resume`` keeps, and writes
    args.json. Raises :class:`UsageError` before anything is written if the run must not go ahead."""
    inputs = gather_inputs(cfg.input, cfg.recursive, cfg.hidden)  # refuses a missing INPUT or a pattern matching none
    if not inputs.files and not inputs.list_errors:
        named = ", ".join(shown(str(p)) for p in cfg.input)
        raise UsageError(f"{named}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)}"
                         f"{'' if cfg.recursive else ', not in subfolders (--no-recursive)'})")
    fresh = not cfg.out and not (cfg.resume or cfg.overwrite)
    out = Path(cfg.out) if cfg.out else default_out(inputs, reuse=cfg.resume or cfg.overwrite, reserve=fresh)
    try:
        return _begin(cfg, inputs, out)
    except BaseException:
        if fresh:  # the folder reserved for this run, still empty: not left behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _begin(cfg: PredictConfig, inputs: Inputs, out: Path) -> Run:
    files, list_errors, skipped, root = inputs.files, inputs.list_errors, inputs.skipped, inputs.base
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {shown(str(out))} is a file; give a folder")
    if not cfg.out and (cfg.resume or cfg.overwrite):
        print(f"segapp predict: no --out given: {'resuming' if cfg.resume else 'redoing'} the latest run, in "
              f"{shown(str(out))}", file=sys.stderr)
    items = plan(files, root, out, cfg.overlays)
    if items:
        check_folders(inputs.roots, out, items)
    weights = weights_fingerprint(cfg.weights)
    with ThreadPoolExecutor(max(1, min(cfg.workers, 8)), thread_name_prefix="segapp-hash") as pool:
        for it, digest in zip(items, pool.map(lambda it: input_fingerprint(it.src), items)):
            it.input_sha256, it.weights_sha256 = digest, weights
    existing = [p for it in items for p in it.outs.values() if os.path.lexists(p)]
    existing += [p for p in run_files(out) if os.path.lexists(p)]
    if existing and not (cfg.overwrite or cfg.resume):
        raise UsageError(f"{len(existing)} outputs already exist in {shown(str(out))} (e.g. "
                         f"{shown(str(existing[0]))}); nothing was written; use --resume to finish that run or "
                         "--overwrite to redo it")
    if cfg.resume or cfg.overwrite:
        remove_stale_temps(out, input_ids(items))
    previous = read_previous(out) if cfg.resume else {}
    done, stale = {}, 0
    for it in items:
        prev = previous.get(it.rel)
        if it.error or not prev or prev.get("status") != "ok":
            continue
        names = {k: shown(p.relative_to(out).as_posix()) for k, p in it.outs.items()}
        if (it.input_sha256 is None or prev.get("input_sha256") != it.input_sha256
                or prev.get("weights_sha256") != weights
                or any(prev.get(k) not in (None, v) for k, v in names.items())):
            stale += 1  # the input, the weights or the output names changed since: redo it, outputs and all
        elif all(complete_png(p) for p in it.outs.values()):
            done[it.rel] = prev
        else:
            it.reuse = True  # some outputs missing or cut short: write those, keep the complete ones
    if stale:
        print(f"segapp predict: {stale} files done earlier are redone: their input or the weights are not those of "
              "that run (or it predates fingerprints)", file=sys.stderr)
    todo = [it for it in items if it.rel not in done]
    if todo or not (out / ARGS_JSON).exists():  # a finished run resumed again stays untouched
        given = [os.path.realpath(p) if os.path.lexists(p) else os.path.abspath(p) for p in cfg.input]  # patterns
        args = {**cfg.record(), "input": given[0] if len(given) == 1 else given, "out": os.path.realpath(out),
                "files": len(items), "weights_sha256": weights}
        args.pop("run", None)
        text = json.dumps(args, default=lambda v: shown(str(v)), indent=2) + "\n"
        write_atomic(out / ARGS_JSON, text.encode())
    return Run(root, out, items, todo, done, skipped, list_errors)


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
        row.update(width=w, height=h, digits=seg.text, text=seg.text, lines=seg.lines, inverted=seg.prepared.inverted,
                   digit_height=None if seg.digit_height is None else round(seg.digit_height, 1),
                   scale=round(seg.scale, 4),
                   areas=[d["area"] for d in seg.digits], confidences=[d["confidence"] for d in seg.digits],
                   **{k: shown(p.relative_to(out).as_posix()) for k, p in item.outs.items()})
        row["bboxes"] = [d["bbox"] for d in seg.digits]
    return row


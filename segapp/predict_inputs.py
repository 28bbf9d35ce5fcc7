"""`segapp predict`'s INPUT arguments: folders, files and quoted patterns resolved to image files, and OUT chosen.

The first thing a run settles: which files it reads (each once, in a fixed order), the folder their output names
are relative to, and, without ``--out``, which ``runs/predict/<name>`` folder it writes. Any file name works,
including names that are not valid UTF-8 (:func:`shown` makes them printable). Kept apart from output naming
(:mod:`segapp.predict_plan`) and writing (:mod:`segapp.predict_outputs`) so each can be read and tested alone.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .classes import SegappError
from .images import IMAGE_EXTENSIONS


class UsageError(SegappError):
    """A problem with the command line or the folders: one line, exit status 2."""


def shown(s: str) -> str:
    """``s`` as valid UTF-8 text: the bytes of a non-UTF-8 file name (kept by Python as lone surrogates)
    become ``\\xNN``, so ``b'caf\\xe9.png'`` shows as ``caf\\xe9.png`` in the summary and in messages."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


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

"""Writing files without ever losing one: atomic writes under segapp's own temp names, and a sweep that
removes only those.

Every file segapp writes (predict's PNGs and summaries, training's checkpoints and logs) is first written
to a temp file in the destination folder, then renamed over its final name, so a reader (or a run killed at
any moment) never sees half a file. The temp files have names of one exact shape, ``.sg-<8 hex><4 hex>.tmp``,
where the last 4 hex digits are a keyed checksum of the first 8. A killed run can leave such a file behind;
:func:`sweep_temps` removes it on the next run. It removes nothing else: a file whose name merely looks
similar (``.notes.tmp``, ``.sg-00000000.tmp``), a link, a folder, or a file that is one of the run's inputs
is never touched.

New files get the usual permissions (``0o666`` less the umask, so normally 0644), whether written here or by
a library that writes to the temp path itself (safetensors, ``torch.save``, matplotlib).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from .classes import SegappError

TEMP_PATTERN = re.compile(r"\.sg-([0-9a-f]{8})([0-9a-f]{4})\.tmp")
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
RESUME_HINT = "free some space, then run the same command with --resume to finish"
HASH_HEX = 16  # fingerprints (of inputs, of weights) are the first 64 bits of a SHA-256, as hex


class OutputError(SegappError):
    """A file could not be written; the message names the file and what to do."""


def _tag(token: str) -> str:
    return hashlib.sha256(b"segapp temp file " + token.encode()).hexdigest()[:4]


def temp_name() -> str:
    """A fresh name of segapp's temp-file shape (20 characters, so any output name can have one beside it)."""
    token = secrets.token_hex(4)
    return f".sg-{token}{_tag(token)}.tmp"


def is_own_temp(name: str) -> bool:
    """Whether ``name`` has the exact shape, checksum included, of a name made by :func:`temp_name`."""
    m = TEMP_PATTERN.fullmatch(name)
    return bool(m) and m.group(2) == _tag(m.group(1))


def _create_temp(folder: Path) -> tuple[int, Path]:
    """Creates a new, empty temp file in ``folder`` (never an existing one, never through a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / temp_name()
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(folder))


def write_atomic(path: Path | str, data: bytes | Callable[[str], object], fsync: bool = False,
                 replace: bool = True) -> None:
    """Writes ``data`` (bytes, or a function that writes the file at the path it is given) to ``path`` atomically.

    The content goes to a fresh temp file beside ``path`` that is then renamed over it: ``path`` is either its old
    complete version or its new complete version, never a mix, and the temp file is removed if anything fails.
    With ``fsync`` the data is on disk before the rename (checkpoints); without, a power cut may leave a short
    file, which ``predict --resume`` detects. An :class:`OSError` names ``path``, not the temp file.

    ``replace=False``: an existing ``path`` is kept as it is (the temp file is hard-linked into place, which fails
    when the name is taken); for files named after their content, which a concurrent writer may place first and
    which a reader may be reading (the demo's result images). Without hard links it falls back to the rename.
    """
    path = Path(path)
    try:
        fd, tmp = _create_temp(path.parent)
    except FileNotFoundError:  # the folder is made on first need: `segapp predict` writes thousands of files
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path.parent)
    placed = False
    try:
        try:
            if callable(data):
                mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 less the umask, as created
                os.close(fd)
                fd = -1
                data(str(tmp))
                if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # the writer made its own file (safetensors: 0600)
                    os.chmod(tmp, mode)
                if fsync:
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
            else:
                with open(fd, "wb", closefd=True) as f:
                    fd = -1
                    f.write(data)
                    if fsync:
                        f.flush()
                        os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                _link_new(tmp, path)
            placed = True
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        if fd >= 0:
            os.close(fd)
        if (not placed or not replace) and os.path.lexists(tmp):
            os.unlink(tmp)


def _link_new(tmp: Path, path: Path) -> None:
    """Places ``tmp`` at ``path`` unless ``path`` exists (it is then kept); see :func:`write_atomic`."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: the rename
        os.replace(tmp, path)


def file_sha256(path: Path | str) -> str | None:
    """SHA-256 of a regular file's bytes (hex); None for anything that is not one or cannot be read.
    A pipe or device is never read (opened non-blocking and checked first)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        with open(fd, "rb", closefd=False) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def file_id(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names, links followed; None when it does not exist or cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def sweep_temps(folders: Iterable[Path], recursive: Iterable[Path] = (), keep: set | None = None) -> int:
    """Removes temp files left by killed segapp runs from ``folders`` (top level only) and ``recursive`` (whole
    trees, links to folders not followed). Only regular files whose name passes :func:`is_own_temp` and whose
    (device, inode) is not in ``keep`` (the run's inputs) are removed. Returns how many were."""
    keep = keep or set()
    removed = 0

    def consider(folder: str, name: str) -> None:
        nonlocal removed
        if not is_own_temp(name):
            return
        p = os.path.join(folder, name)
        try:
            st = os.lstat(p)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in keep:
            os.unlink(p)
            removed += 1

    for top in folders:
        try:
            names = os.listdir(top)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            consider(str(top), name)
    for top in recursive:
        for folder, _, names in os.walk(top):
            for name in names:
                consider(folder, name)
    return removed


def describe(e: OSError, path: Path | str | None = None) -> str:
    """One line for an OS error on a file: what failed, on which path, and for a full disk, what to do next."""
    where = path if path is not None else e.filename
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in DISK_FULL:
        return f"cannot write {where}: {reason}; {RESUME_HINT}"
    if isinstance(e, (IsADirectoryError, FileExistsError, NotADirectoryError)) and where is not None:
        return f"cannot write {where}: {reason} (a folder or file of that name is in the way)"
    return f"{where}: {reason}" if where is not None else reason

"""Names that become paths, and the files bnlab may replace or delete.

    check_name(name, what) -> name    refuse a name that is not one safe file name
    inside(root, *parts) -> Path      root/parts resolved, proven to lie under root resolved
    Manifest(folder)                  the files bnlab wrote in a folder; only those it replaces
                                      (``.write(name, write)``: write_whole where allowed)
    cache_dir() -> Path               bnlab's cache folder (parsed datasets, built kernels)
    write_whole(path, write, suffix)  path written whole or not at all (a temporary, renamed)

An experiment's and an arm's names become folder and file names (``runs/NAME/``, saved models,
TensorBoard's ``DIR/NAME/ARM/seed-N``), so they are checked where an experiment is loaded and
refused unless they are one plain file name: not empty, no path separator, no leading dot (so not
``.`` or ``..``), no control or format characters (no terminal escapes, newlines or NUL), at most
:data:`NAME_MAX_BYTES` bytes. Refusing, rather than mapping a name to another file name, keeps
the name a user wrote the one they find on disk.

Every path bnlab writes or deletes goes through :func:`inside` first, and a file that already
exists is replaced or deleted only when the folder's manifest (``.bnlab-written``, one name a
line, appended to) lists it as bnlab's: a user's ``report.md`` in an ``--out`` folder, or a note in
a TensorBoard trial folder, is refused or left alone, never overwritten.

This module is at the bottom of bnlab's import graph: it imports only ``bnlab.errors``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import unicodedata
from pathlib import Path

from bnlab.errors import UserError

NAME_MAX_BYTES = 100  # leaves room under the usual 255-byte file name limit for suffixes
MANIFEST = ".bnlab-written"
_HEADER = "# files bnlab wrote in this folder: the only ones it replaces or deletes here\n"


def cache_dir() -> Path:
    """``$BNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/bnlab``, else ``~/.cache/bnlab``."""
    if os.environ.get("BNLAB_CACHE_DIR"):
        return Path(os.environ["BNLAB_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bnlab"
    return Path.home() / ".cache" / "bnlab"


def write_whole(path, write, suffix: str = ".tmp") -> Path:
    """Write ``path`` whole or not at all; returns it.

    ``write(temporary)`` fills a new file beside ``path`` (the same folder, so that the rename is
    atomic), which then replaces ``path``. On any error or interruption (Ctrl-C, or the exception
    bnlab's SIGTERM handler raises) the temporary file is removed and ``path`` is as it was, so
    a reader, or a process writing the same file at once, only ever sees a whole one. ``suffix``
    ends the temporary's name: NumPy and Keras choose a file's format by it. The file is made
    readable by all (0644), as a plain ``open`` would leave it; ``path`` is not checked here
    (callers find it through :func:`inside` or a :class:`Manifest`)."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):  # renamed: nothing left to remove
            temporary.unlink()
    return path


class PathError(UserError):
    """A name that cannot be a file name, a path outside its folder, or a file bnlab did not
    write; the message is one line."""


def shown(text: str, width: int = 40) -> str:
    """``text`` as a Python literal (control characters escaped), cut after ``width`` characters."""
    return repr(text[:width]) + ("..." if len(text) > width else "")


def check_name(name, what: str = "name") -> str:
    """``name`` if it can be one file name (see the module's docstring); else PathError."""
    if not isinstance(name, str) or not name:
        raise PathError(f"{what} is empty; give a name of letters, digits, '-' or '_'")
    bad = next((c for c in name if unicodedata.category(c)[0] == "C"
                or unicodedata.category(c) in ("Zl", "Zp")), None)
    if bad is not None:
        raise PathError(f"{what} {shown(name)} holds the control character {bad!r}; names "
                        "become file names and are printed, so they may not")
    if "/" in name or "\\" in name:
        raise PathError(f"{what} {shown(name)} holds a path separator; names become file names, "
                        "so they may not hold '/' or '\\'")
    if name.startswith("."):
        raise PathError(f"{what} {shown(name)} starts with a dot; names become file names, so "
                        "they may not ('.', '..' and hidden files)")
    size = len(name.encode("utf-8"))
    if size > NAME_MAX_BYTES:
        raise PathError(f"{what} {shown(name)} is {size} bytes long; at most {NAME_MAX_BYTES} "
                        "bytes (UTF-8) are allowed, as it becomes a file name")
    return name


def inside(root, *parts) -> Path:
    """``root/parts`` resolved (symbolic links followed), if it lies under ``root`` resolved;
    else PathError. What bnlab writes or deletes is found through this."""
    base = Path(root).resolve()
    path = base.joinpath(*map(str, parts)).resolve()
    if path != base and base not in path.parents:
        raise PathError(f"{Path(root).joinpath(*map(str, parts))} resolves to {path}, outside "
                        f"{base}; bnlab writes only under its folders")
    return path


class Manifest:
    """The files bnlab wrote in ``folder``: it may replace or delete those, and create new ones.

    The list is appended to one line at a time (a short append is atomic on a local file
    system), so concurrent runs that write into one folder lose none of each other's lines."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def file(self) -> Path:
        return self.folder / MANIFEST

    def names(self) -> set[str]:
        try:
            text = self.file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return set()
        return {line for line in text.splitlines() if line and not line.startswith("#")}

    def target(self, name: str) -> Path:
        """Where bnlab may write the file ``name``: it lies in the folder, and it does not exist
        or bnlab wrote it; else PathError."""
        path = inside(self.folder, name)
        if path.parent != self.folder.resolve():
            raise PathError(f"{name!r} is not a file name in {self.folder}")
        if (path.exists() or path.is_symlink()) and name not in self.names():
            raise PathError(f"{path} exists and bnlab did not write it; bnlab leaves it as it is: "
                            "move it, or choose another folder")
        return path

    def check(self, names) -> None:
        for name in names:
            self.target(name)

    def write(self, name: str, write, suffix: str = ".tmp") -> Path:
        """``write_whole`` of the file ``name`` where :meth:`target` allows it, then recorded
        as bnlab's (:meth:`wrote`); returns its path."""
        path = write_whole(self.target(name), write, suffix)
        self.wrote(name)
        return path

    def wrote(self, name: str) -> None:
        """Record that bnlab wrote ``name`` (once)."""
        if "\n" in name or name in self.names():
            return
        fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                os.write(fd, _HEADER.encode("utf-8"))
            os.write(fd, f"{name}\n".encode("utf-8"))
        finally:
            os.close(fd)

    def remove(self, name: str) -> bool:
        """Delete ``name`` if bnlab wrote it; a file it did not write is left. True if deleted."""
        path = inside(self.folder, name)
        if name not in self.names():
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

"""Downloads through ``keras.utils.get_file`` (MD5-checked against the published sums), moved
into place only once verified.

Each file is fetched by ``get_file`` under a hidden temporary name beside its final one, checked
against the published MD5 by ``get_file`` itself, and only then moved to its final name
(``paths.write_whole``): whatever happens (no network, a reset connection, a wrong checksum, a
kill), no partial or unverified file is ever left under the final name, and the temporary one is
removed.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from bnlab import paths
from bnlab.data.idx import DatasetError, one_line


DOWNLOAD_TIMEOUT = 30  # seconds a connection may stay silent (get_file itself waits forever)


class DownloadFailed(Exception):
    """Network trouble (offline, HTTP error, timeout); turned into the 'not found' message."""


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, final: Path, want_md5: str) -> None:
    """Download ``url`` with get_file into a temp file next to ``final``; move it there only if
    the MD5 matches."""
    from keras.utils import get_file  # imports Keras: only when a download is needed

    def fetch(temporary: Path) -> None:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        try:
            get_file(fname=temporary.name, origin=url, file_hash=want_md5, hash_algorithm="md5",
                     cache_dir=str(temporary.parent), cache_subdir="", force_download=True)
        except ValueError as e:  # get_file's "file hash does not match"
            got = _md5(temporary) if temporary.exists() else "nothing"
            raise DatasetError(f"{final}: checksum mismatch for the download from {url}: "
                               f"expected MD5 {want_md5}, got {got}; the file was discarded; "
                               "fix: try again later, or put the files in place yourself") from e
        except Exception as e:  # get_file wraps HTTP and URL errors in a bare Exception
            raise DownloadFailed(f"{url}: {one_line(e)}") from e
        finally:
            socket.setdefaulttimeout(previous)

    try:
        if not os.access(final.parent, os.W_OK):  # get_file would fall back to /tmp/.keras
            raise PermissionError(13, "not writable")
        paths.write_whole(final, fetch, suffix=".part")
    except OSError as e:  # the folder, the temporary or the rename; fetch raises none
        raise DownloadFailed(f"cannot write to {final.parent} ({e.strerror})") from e


def download_files(info: dict, dest: Path) -> None:
    """Fetch the four ``.gz`` files into ``dest``, each from the first mirror that serves it."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadFailed(f"cannot create {dest} ({e.strerror})") from e
    for stem in info["files"].values():
        final, want = dest / f"{stem}.gz", info["md5"][f"{stem}.gz"]
        try:
            if os.path.isfile(final) and _md5(final) == want:
                continue
        except OSError:
            pass
        failures, mismatch = [], None
        for base in info["urls"]:
            url = (base if base.endswith("/") else base + "/") + final.name
            try:
                _fetch(url, final, want)
                break
            except DownloadFailed as e:
                failures.append(str(e))
            except DatasetError as e:
                mismatch = mismatch or e
        else:
            if mismatch is not None:
                raise mismatch
            raise DownloadFailed("; ".join(failures) or "no download address configured")

"""Downloads verified against published checksums, written atomically.

A file is streamed into a hidden temporary file beside its final name, its MD5 compared with the
published one, and only then moved into place with ``os.replace``: whatever happens (no network,
a reset connection, a wrong checksum), no partial or unverified file is ever left under the final
name.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from bnlab.data.idx import DatasetError, one_line

DOWNLOAD_TIMEOUT = 30  # seconds, per connection attempt / read


class DownloadFailed(Exception):
    """Network trouble (offline, HTTP error, timeout); turned into the 'not found' message."""


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, final: Path, want_md5: str) -> None:
    """Stream ``url`` into a temp file next to ``final``; move it there only if the MD5 matches."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as e:
        raise DownloadFailed(f"cannot write to {final.parent} ({e.strerror})") from e
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != want_md5:
            raise DatasetError(f"{final}: checksum mismatch for the download from {url}: expected "
                               f"MD5 {want_md5}, got {h.hexdigest()}; the file was discarded; fix: "
                               "try again later, or put the files in place yourself")
        os.replace(tmp, final)
        tmp = None
    except urllib.error.HTTPError as e:
        raise DownloadFailed(f"{url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadFailed(f"{url}: {one_line(e.reason)}") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DownloadFailed(f"{url}: {type(e).__name__}: {one_line(e)}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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
            print(f"bnlab: downloading {url}", file=sys.stderr)
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

"""Datasets for bnlab: IDX files, where to find them, checksums, a parsed-array cache, splits.

``load("fashion_mnist")`` returns a :class:`Dataset` with uint8 images ``(N, 28, 28)`` and int64
labels for train / validation / test, split the way the seed notebooks split them. Files are
looked for, in this order, in: the ``data_dir`` argument; ``$BNLAB_DATA_DIR`` (first its
``<name>/`` subfolder, then the folder itself); bnlab's cache (``cache_dir()/<name>/``); Debian's
``dataset-fashion-mnist`` package (:data:`DEBIAN_DIRS`); Keras's cache (:data:`KERAS_DATASETS_DIR`);
and last a download into ``cache_dir()/<name>/``, verified by MD5. A location that holds the files
but holds a bad one raises :class:`DatasetError`: a broken file is never skipped silently.

Parsed arrays are kept as ``.npy`` files under ``cache_dir()/arrays/``, keyed by the SHA-256 of the
source files' contents, so a second load takes milliseconds instead of re-inflating the gzip files
and a source rewritten in place (even with the same size and mtime) is parsed again. A file's hash
is computed once per process and kept while its inode, size, mtime and ctime stay the same (ctime
cannot be set back by the program that rewrites the file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnlab.data.download import DownloadFailed, download_files
from bnlab.data.idx import DatasetError, bad_file, one_line, read_idx
from bnlab.errors import UserError
from bnlab.paths import cache_dir

__all__ = ["DATASETS", "DEBIAN_DIRS", "KERAS_DATASETS_DIR", "Dataset", "DatasetError",
           "cache_dir", "load", "preprocess", "read_idx"]


# The four files of an IDX dataset, by the array they hold; each may be gzipped (.gz) or raw.
_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
          "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}

#: What bnlab knows about each dataset. ``urls`` are base addresses tried in order (a file's
#: address is base + file name); ``md5`` holds the published checksums of the ``.gz`` files.
DATASETS: dict[str, dict] = {
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "files": dict(_FILES),
        "urls": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "class_names": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "image_shape": (28, 28),
        "keras_subdir": "fashion-mnist",
        "npz": None,
    },
    "mnist": {
        "title": "MNIST",
        "files": dict(_FILES),
        "urls": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "class_names": tuple("0123456789"),
        "image_shape": (28, 28),
        "keras_subdir": "mnist",
        "npz": "mnist.npz",  # Keras's format: arrays x_train, y_train, x_test, y_test
    },
}

#: Folders where a distribution package installs a dataset (Debian: ``dataset-fashion-mnist``).
DEBIAN_DIRS: dict[str, Path] = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}

#: Keras's dataset cache; ``None`` means ``$KERAS_HOME/datasets``, else ``~/.keras/datasets``.
KERAS_DATASETS_DIR: Path | None = None

_CACHE_FORMAT = "2"   # bump when the layout of the parsed-array cache changes
_ARRAYS = tuple(_FILES)
_DEBIAN_HINT = ("Debian's copy can be reinstalled with: "
                "sudo apt-get install --reinstall dataset-fashion-mnist")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train / validation / test arrays of one dataset, and where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f}={getattr(self, f).shape}" for f in ("x_train", "x_val", "x_test"))
        return (f"Dataset({self.name!r}, {shapes}, dtype={self.x_train.dtype}, "
                f"source={self.source!r})")


# ---------------------------------------------------------------------------------------------
# Sources: where the files are


@dataclass(frozen=True)
class _Source:
    where: Path                       # reported as Dataset.source
    files: dict[str, Path]            # array name -> IDX file, or {"npz": file}
    hint: str = ""                    # extra fix for errors in this location


def _keras_datasets_dir() -> Path:
    if KERAS_DATASETS_DIR is not None:
        return Path(KERAS_DATASETS_DIR)
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _candidates(name: str, info: dict, data_dir) -> list[tuple[Path, str]]:
    """Places to look, in order, each with a hint to add to error messages about its files."""
    places = []
    if data_dir is not None:
        places.append((Path(data_dir).expanduser(), ""))
    if os.environ.get("BNLAB_DATA_DIR"):
        env = Path(os.environ["BNLAB_DATA_DIR"]).expanduser()
        places += [(env / name, ""), (env, "")]
    places.append((cache_dir() / name, ""))
    if name in DEBIAN_DIRS:
        places.append((Path(DEBIAN_DIRS[name]), _DEBIAN_HINT))
    keras = _keras_datasets_dir()
    places.append((keras / info["keras_subdir"], ""))
    if info["npz"]:
        places.append((keras / info["npz"], ""))
    return places


def _probe(info: dict, path: Path, hint: str, searched: list[str]) -> _Source | None:
    """The source at ``path`` if it is complete, else None (noting why in ``searched``)."""
    npz = info["npz"]
    if os.path.isdir(path):
        found, missing = {}, []
        for key, stem in info["files"].items():
            hit = next((p for p in (path / f"{stem}.gz", path / stem) if os.path.isfile(p)), None)
            if hit is None:
                missing.append(stem)
            else:
                found[key] = hit
        if not missing:
            return _Source(path, found, hint)
        if npz and os.path.isfile(path / npz):
            return _Source(path / npz, {"npz": path / npz}, hint)
        searched.append(f"{path} (missing {', '.join(missing)})" if found else f"{path} (empty)")
    elif npz and path.name.endswith(".npz") and os.path.isfile(path):
        return _Source(path, {"npz": path}, hint)
    else:
        searched.append(f"{path} (not found)")
    return None


def _parse(source: _Source) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a source's arrays; returns them and, per array, the file name for messages."""
    if "npz" in source.files:
        path = source.files["npz"]
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in _ARRAYS if k not in z.files]
                if missing:
                    raise bad_file(path, f"lacks the array(s) {', '.join(missing)} (a Keras mnist.npz "
                                     "holds x_train, y_train, x_test, y_test)")
                arrays = {k: z[k] for k in _ARRAYS}
        except DatasetError:
            raise
        except Exception as e:  # zipfile, zlib, numpy format and OS errors alike
            raise bad_file(path, f"not a readable .npz file ({type(e).__name__}: {e})") from e
        return arrays, {k: f"{path} [{k}]" for k in _ARRAYS}
    return ({k: read_idx(source.files[k]) for k in _ARRAYS},
            {k: str(source.files[k]) for k in _ARRAYS})


def _check(info: dict, arrays: dict, names: dict[str, str]) -> dict:
    """Check shapes, dtypes, counts and label range; returns arrays with int64 labels."""
    k, (h, w) = len(info["class_names"]), info["image_shape"]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        nx, ny = names[f"x_{split}"], names[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (h, w):
            raise bad_file(nx, f"expected images of shape (N, {h}, {w}), found shape {x.shape}")
        if x.dtype != np.uint8:
            raise bad_file(nx, f"expected uint8 pixels, found {x.dtype}")
        if y.ndim != 1:
            raise bad_file(ny, f"expected 1-D labels, found an array of shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise bad_file(ny, f"expected integer labels, found {y.dtype}")
        if len(x) != len(y):
            raise DatasetError(f"{nx} holds {len(x)} images but {ny} holds {len(y)} labels: the "
                               f"two files do not belong together; fix: replace them with a "
                               f"matching pair.")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise bad_file(ny, f"labels must lie in 0..{k - 1}, found {y.min()}..{y.max()}")
    return {**arrays, "y_train": arrays["y_train"].astype(np.int64, copy=False),
            "y_test": arrays["y_test"].astype(np.int64, copy=False)}


# ---------------------------------------------------------------------------------------------
# Parsed-array cache


_CONTENT_HASHES: dict[tuple, str] = {}  # (realpath, inode, size, mtime, ctime) -> SHA-256 hex


def content_hash(path) -> str:
    """SHA-256 of the file at ``path``, computed once per process for an unchanged file."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _CONTENT_HASHES:
        with open(path, "rb") as f:
            _CONTENT_HASHES[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _CONTENT_HASHES[key]


def _cache_path(name: str, source: _Source) -> Path:
    h = hashlib.sha256(f"{_CACHE_FORMAT}\0{name}".encode())
    for key, path in sorted(source.files.items()):
        h.update(f"\0{key}\0{content_hash(path)}".encode())
    return cache_dir() / "arrays" / f"{name}-{h.hexdigest()[:16]}"


def _save_cached(path: Path, arrays: dict) -> None:
    """Write the arrays into a temporary folder, then rename it into place; skip on any OSError."""
    tmp = None
    try:
        shutil.rmtree(path, ignore_errors=True)  # a stale or unreadable entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        for k in _ARRAYS:
            np.save(os.path.join(tmp, f"{k}.npy"), arrays[k], allow_pickle=False)
        os.rename(tmp, path)
        tmp = None
    except OSError:
        pass  # caching is an optimisation: an unwritable cache is not an error
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_source(name: str, info: dict, source: _Source) -> dict:
    try:
        cached = _cache_path(name, source)
    except OSError as e:
        raise bad_file(e.filename or source.where, f"cannot read the file ({e.strerror})") from e
    if os.path.isdir(cached):
        try:
            arrays = {k: np.load(cached / f"{k}.npy", allow_pickle=False) for k in _ARRAYS}
            return _check(info, arrays, {k: f"{cached / k}.npy" for k in _ARRAYS})
        except (OSError, ValueError, EOFError, DatasetError):
            pass  # a damaged cache entry: parse the source again and rewrite it
    try:
        arrays = _check(info, *_parse(source))
    except DatasetError as e:
        if source.hint:
            raise DatasetError(f"{e} {source.hint}.") from e
        raise
    _save_cached(cached, arrays)
    return arrays


# ---------------------------------------------------------------------------------------------
# Download


def _not_found(name: str, info: dict, searched: list[str], reason: str) -> DatasetError:
    names = ", ".join(f"{stem}.gz" for stem in info["files"].values())
    places = f"into data_dir, $BNLAB_DATA_DIR or {cache_dir() / name}"
    if name in DEBIAN_DIRS:
        fix = f"sudo apt-get install dataset-fashion-mnist, or put the four files {names} " \
              f"(gzipped or raw) {places}"
    elif info["npz"]:
        fix = f"put the four files {names} (gzipped or raw) {places}, or {info['npz']} (arrays " \
              f"x_train, y_train, x_test, y_test) into {_keras_datasets_dir()} or one of those"
    else:
        fix = f"put the four files {names} (gzipped or raw) {places}"
    return DatasetError(f"{info['title']} not found ({one_line(reason)}); "
                        f"searched: {'; '.join(searched)}; fix: {fix}")


def _find(name: str, info: dict, data_dir, download: bool) -> _Source:
    """The first complete source in lookup order, else the downloaded one, else DatasetError."""
    searched: list[str] = []
    for place, hint in _candidates(name, info, data_dir):
        source = _probe(info, place, hint, searched)
        if source is not None:
            break
    else:
        if not download:
            raise _not_found(name, info, searched, "downloads are off: download=False or BNLAB_OFFLINE=1")
        try:
            download_files(info, cache_dir() / name)
        except DownloadFailed as e:
            raise _not_found(name, info, searched, f"download failed: {e}") from e
        source = _probe(info, cache_dir() / name, "", searched)
        if source is None:  # pragma: no cover - only if the cache folder vanished meanwhile
            raise _not_found(name, info, searched, "the downloaded files disappeared")
    if data_dir is not None and searched:  # the data_dir argument was passed over
        warnings.warn(f"data_dir {data_dir} holds no complete {info['title']} files; "
                      f"using {source.where}", stacklevel=3)
    return source


# ---------------------------------------------------------------------------------------------
# Loading, splitting, preprocessing


def _check_split_args(validation, validation_split) -> None:
    if validation_split is not None:
        if validation != 5000:
            raise UserError("give validation=N (the first N training images) or "
                             "validation_split=f (the last fraction f), not both")
        if (isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)
                or not 0 < validation_split < 1):
            raise UserError(f"validation_split must be a fraction strictly between 0 and 1, "
                             f"got {validation_split!r}")
    elif isinstance(validation, bool) or not isinstance(validation, numbers.Integral) \
            or validation < 0:
        raise UserError(f"validation must be a whole number of images >= 0, got {validation!r}")


def _split(x, y, validation, validation_split):
    """((x_train, y_train), (x_val, y_val)) as the seeds make them (see :func:`load`)."""
    n = len(x)
    if validation_split is not None:
        split_at = int(n * (1 - validation_split))
        if split_at <= 0 or split_at >= n:
            raise UserError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set out of {n} training images")
        return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])
    if validation >= n:
        raise UserError(f"validation={validation} must be smaller than the number of training "
                         f"images ({n})")
    return (x[validation:], y[validation:]), (x[:validation], y[:validation])


def load(name: str, data_dir=None, *, validation: int = 5000, validation_split: float | None = None,
         preprocessing: str | None = None, download: bool = True) -> Dataset:
    """Load ``"fashion_mnist"`` or ``"mnist"``, split and optionally preprocessed.

    ``validation=N`` takes the first N training images as the validation set (seeds 000, 002,
    004); ``validation_split=f`` takes the last fraction f, as Keras's ``fit(validation_split=f)``
    does (seed 001): ``split_at = int(n * (1 - f))``. ``validation=0`` gives an empty validation
    set. ``preprocessing`` is None (uint8), ``"scale"`` or ``"standardize"``: see
    :func:`preprocess`. Missing, corrupt or inconsistent files raise :class:`DatasetError`.
    ``download=False``, or the environment variable ``BNLAB_OFFLINE=1``, never downloads.
    """
    download = download and os.environ.get("BNLAB_OFFLINE", "") in ("", "0")
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    _check_split_args(validation, validation_split)
    _check_preprocessing(preprocessing)
    info = DATASETS[name]
    source = _find(name, info, data_dir, download)
    arrays = _read_source(name, info, source)
    (x_train, y_train), (x_val, y_val) = _split(arrays["x_train"], arrays["y_train"],
                                                validation, validation_split)
    dataset = Dataset(name=name, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                      x_test=arrays["x_test"], y_test=arrays["y_test"],
                      class_names=tuple(info["class_names"]), source=str(source.where))
    return preprocess(dataset, preprocessing)


_PREPROCESSING = (None, "scale", "standardize")


def _check_preprocessing(how) -> None:
    if how not in _PREPROCESSING:
        raise UserError(f"preprocessing must be one of {_PREPROCESSING}, got {how!r}")


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and population std (ddof=0) of uint8 data, exactly, from a histogram of its values."""
    counts = np.zeros(256, dtype=np.int64)
    flat = x.reshape(len(x), -1)
    for i in range(0, len(flat), 4096):  # in chunks: bincount works on an intp copy
        counts += np.bincount(flat[i:i + 4096].ravel(), minlength=256)
    n, values = counts.sum(), np.arange(256, dtype=np.float64)
    mean = float((counts * values).sum() / n)
    std = math.sqrt(float((counts * (values - mean) ** 2).sum() / n))
    return mean, std if std > 0 else 1.0  # as StandardScaler: a constant feature is not scaled


def preprocess(dataset: Dataset, how: str | None) -> Dataset:
    """A copy of ``dataset`` with float32 images: ``"scale"`` divides by 255; ``"standardize"``
    computes (x - mean) / std with ONE mean and ONE std (ddof=0) taken from the training split
    only, as seed 002's ``StandardScaler().fit_transform(x_train.reshape(-1, 1))``, and applies
    them to all three splits. ``None`` returns ``dataset`` unchanged. Expects uint8 images.
    """
    _check_preprocessing(how)
    if how is None:
        return dataset
    xs = {f: getattr(dataset, f) for f in ("x_train", "x_val", "x_test")}
    if any(x.dtype != np.uint8 for x in xs.values()):
        raise UserError(f"preprocess() expects the uint8 images load() returns; these are "
                         f"{dataset.x_train.dtype} (already preprocessed?)")
    if how == "scale":
        shift, scale = 0.0, 255.0
    else:
        if dataset.x_train.size == 0:
            raise UserError("cannot standardize: the training split is empty")
        shift, scale = _mean_std(dataset.x_train)
    out = {}
    for f, x in xs.items():
        y = x.astype(np.float32)
        y -= np.float32(shift)
        y /= np.float32(scale)
        out[f] = y
    return dataclasses.replace(dataset, **out)

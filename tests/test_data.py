"""Tests for bnlab.data: IDX parsing, sources and their order, downloads, cache, splits, scaling.

Every test runs against temporary folders: bnlab's cache, Debian's folder and Keras's cache are
redirected by the autouse fixture, and download addresses point to ``file://`` URLs, so nothing
here touches the network, ~/.keras or ~/.cache.
"""

import gzip
import hashlib
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bnlab.data import sources as data
from bnlab.data import DatasetError

CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
REAL = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array, code=None, trailing=b""):
    array = np.asarray(array)
    dt = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = CODES[dt.str.lstrip("|") if dt.itemsize == 1 else dt.str] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dt).tobytes() + trailing


def write_idx(path, array, gz=None, **kw):
    path = Path(path)
    raw = idx_bytes(array, **kw)
    path.write_bytes(gzip.compress(raw) if (path.suffix == ".gz" if gz is None else gz) else raw)
    return path


def make_arrays(n_train=10, n_test=4, marker=0, k=10):
    """Small fake dataset; every training label equals ``marker`` except a spread of others."""
    rng = np.random.default_rng(marker)
    x_train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_train = np.full(n_train, marker, np.uint8)
    y_train[1:] = np.arange(1, n_train) % k
    y_test = (np.arange(n_test) % k).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def make_source(directory, gz=True, **kw):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = make_arrays(**kw)
    for stem, array in zip(STEMS, arrays):
        write_idx(directory / (stem + (".gz" if gz else "")), array)
    return arrays


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Redirect every location bnlab.data reads or writes into tmp_path; no network."""
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BNLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("BNLAB_OFFLINE", raising=False)  # downloads here go to file:// URLs
    monkeypatch.setitem(data.DEBIAN_DIRS, "fashion_mnist", tmp_path / "debian")
    monkeypatch.setattr(data, "KERAS_DATASETS_DIR", tmp_path / "keras")
    nowhere = (tmp_path / "no-server").as_uri() + "/"
    for name in data.DATASETS:
        monkeypatch.setitem(data.DATASETS[name], "urls", (nowhere,))
    return tmp_path


# --- IDX -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    out = data.read_idx(write_idx(tmp_path / f"a{suffix}", array))
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.dtype.isnative
    assert out.shape == (2, 3, 4) and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_read_idx_sniffs_gzip_without_suffix(tmp_path):
    path = write_idx(tmp_path / "raw-name", np.arange(5, dtype=np.uint8), gz=True)
    np.testing.assert_array_equal(data.read_idx(path), np.arange(5))


def gz(raw):
    """gzip with a fixed header time, so that test ids are the same in every process (xdist)."""
    return gzip.compress(raw, mtime=0)


def corrupt_gzip(raw):
    z = bytearray(gz(raw))
    z[len(z) // 2] ^= 0xFF
    return bytes(z)


@pytest.mark.parametrize("name, content, words", [
    ("magic.gz", gz(b"\x01\x02\x08\x01" + bytes(8)), "magic"),
    ("code", b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "data type code 0x07"),
    ("short", b"\x00\x00", "too short"),
    ("header.gz", gz(b"\x00\x00\x08\x03\x00\x00\x00\x02"), "truncated header"),
    ("trunc.gz", gz(idx_bytes(np.zeros((3, 4), np.uint8))[:-5]), "need 12 bytes"),
    ("trunc-f4", idx_bytes(np.zeros(3, ">f4"))[:-1], "need 12 bytes of data, found 11"),
    ("trail", idx_bytes(np.zeros(3, np.uint8), trailing=b"xyz"), "3 unexpected trailing"),
    ("notgz.gz", b"this is not gzip", "gzip"),
    ("cut.gz", gz(idx_bytes(np.zeros(100, np.uint8)))[:-12], "truncated"),
    ("flip.gz", corrupt_gzip(idx_bytes(np.arange(4000, dtype=">i4"))), "gzip"),
])
def test_read_idx_bad_files(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError) as e:
        data.read_idx(path)
    message = str(e.value)
    assert str(path) in message and words in message and "fix:" in message
    assert "\n" not in message


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        data.read_idx(tmp_path / "absent.gz")


# --- checks on a whole source ------------------------------------------------------------------

def test_mismatched_counts_name_both_files(tmp_path):
    make_source(tmp_path / "d")
    labels = write_idx(tmp_path / "d" / "train-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DatasetError) as e:
        data.load("fashion_mnist", tmp_path / "d")
    images = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    assert str(labels) in str(e.value) and str(images) in str(e.value)


@pytest.mark.parametrize("stem, array, words", [
    ("train-images-idx3-ubyte.gz", np.zeros(10, np.uint8), "shape (N, 28, 28)"),
    ("t10k-labels-idx1-ubyte.gz", np.full(4, 10, np.uint8), "0..9"),
    ("t10k-labels-idx1-ubyte.gz", np.zeros((4, 1), np.uint8), "1-D labels"),
    ("t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), ">f4"), "uint8"),
])
def test_bad_arrays_in_source(tmp_path, stem, array, words):
    make_source(tmp_path / "d")
    write_idx(tmp_path / "d" / stem, array)
    with pytest.raises(DatasetError) as e:
        data.load("fashion_mnist", tmp_path / "d")
    assert str(tmp_path / "d" / stem) in str(e.value) and words in str(e.value)


def test_corrupt_file_is_not_skipped_for_a_later_source(isolated):
    make_source(isolated / "debian")
    make_source(isolated / "d")
    path = isolated / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=str(path)):
        data.load("fashion_mnist", isolated / "d")


def test_debian_error_suggests_reinstall(isolated):
    make_source(isolated / "debian")
    (isolated / "debian" / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="apt-get install --reinstall dataset-fashion-mnist"):
        data.load("fashion_mnist")


# --- where files are found ---------------------------------------------------------------------

def test_lookup_order(isolated, monkeypatch):
    places = {"data_dir": isolated / "d", "env": isolated / "env",
              "cache": isolated / "cache" / "fashion_mnist", "debian": isolated / "debian",
              "keras": isolated / "keras" / "fashion-mnist"}
    for marker, place in enumerate(places.values()):
        make_source(place, gz=marker % 2 == 0, marker=marker)  # mix .gz and raw
    monkeypatch.setenv("BNLAB_DATA_DIR", str(places["env"]))
    for marker, (what, place) in enumerate(places.items()):
        ds = data.load("fashion_mnist", places["data_dir"] if what == "data_dir" else None,
                       validation=0)
        assert ds.source == str(place) and ds.y_train[0] == marker, what
        np.testing.assert_array_equal(ds.x_train, make_arrays(marker=marker)[0])
        if what == "env":
            monkeypatch.delenv("BNLAB_DATA_DIR")
        else:
            for f in place.iterdir():
                f.unlink()


def test_env_dir_subfolder_and_incomplete_dirs_are_skipped(isolated, monkeypatch):
    make_source(isolated / "env" / "mnist", marker=3)
    make_source(isolated / "half")
    (isolated / "half" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("BNLAB_DATA_DIR", str(isolated / "env"))
    with pytest.warns(UserWarning, match="holds no complete"):
        ds = data.load("mnist", isolated / "half", validation=0)
    assert ds.source == str(isolated / "env" / "mnist") and ds.y_train[0] == 3
    assert ds.class_names == tuple("0123456789")


def test_mnist_npz_in_keras_cache(isolated):
    x_train, y_train, x_test, y_test = make_arrays(n_train=12, marker=5)
    (isolated / "keras").mkdir()
    np.savez(isolated / "keras" / "mnist.npz", x_train=x_train, y_train=y_train,
             x_test=x_test, y_test=y_test)
    ds = data.load("mnist", validation=2)
    assert ds.source == str(isolated / "keras" / "mnist.npz")
    np.testing.assert_array_equal(ds.x_val, x_train[:2])
    assert ds.y_train.dtype == np.int64 and ds.y_val[0] == 5
    make_source(isolated / "keras" / "mnist", marker=7)  # IDX files in keras/mnist/ come first
    assert data.load("mnist", validation=0).y_train[0] == 7


def test_bad_npz(isolated):
    (isolated / "keras").mkdir()
    np.savez(isolated / "keras" / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="y_train"):
        data.load("mnist")
    (isolated / "keras" / "mnist.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        data.load("mnist")


def test_keras_home(isolated, monkeypatch):
    monkeypatch.setattr(data, "KERAS_DATASETS_DIR", None)
    monkeypatch.setenv("KERAS_HOME", str(isolated / "kh"))
    make_source(isolated / "kh" / "datasets" / "fashion-mnist", marker=4)
    assert data.load("fashion_mnist", validation=0).y_train[0] == 4


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("BNLAB_CACHE_DIR")
    assert data.cache_dir() == tmp_path / "xdg" / "bnlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == Path.home() / ".cache" / "bnlab"


def test_unknown_name():
    with pytest.raises(DatasetError, match="fashion_mnist, mnist"):
        data.load("cifar10")


# --- download ----------------------------------------------------------------------------------

def serve(tmp_path, monkeypatch, name, md5=None, marker=0):
    """Put a fake dataset behind a file:// URL and point DATASETS[name] at it."""
    make_source(tmp_path / "server", marker=marker)
    sums = {f"{s}.gz": hashlib.md5((tmp_path / "server" / f"{s}.gz").read_bytes()).hexdigest()
            for s in STEMS}
    monkeypatch.setitem(data.DATASETS[name], "md5", md5 or sums)
    monkeypatch.setitem(data.DATASETS[name], "urls",
                        ((tmp_path / "gone").as_uri() + "/", (tmp_path / "server").as_uri()))
    return sums


def test_download_from_file_url(isolated, monkeypatch):
    sums = serve(isolated, monkeypatch, "mnist", marker=6)  # mirror 1 fails, mirror 2 serves
    ds = data.load("mnist", validation=0)
    dest = isolated / "cache" / "mnist"
    assert ds.source == str(dest) and ds.y_train[0] == 6
    assert sorted(p.name for p in dest.iterdir()) == sorted(sums)
    for fname, md5 in sums.items():
        assert hashlib.md5((dest / fname).read_bytes()).hexdigest() == md5


def test_download_checksum_mismatch_leaves_nothing(isolated, monkeypatch):
    sums = serve(isolated, monkeypatch, "fashion_mnist")
    bad = dict(sums, **{"t10k-images-idx3-ubyte.gz": "0" * 32})
    monkeypatch.setitem(data.DATASETS["fashion_mnist"], "md5", bad)
    with pytest.raises(DatasetError) as e:
        data.load("fashion_mnist")
    dest = isolated / "cache" / "fashion_mnist"
    assert "0" * 32 in str(e.value) and sums["t10k-images-idx3-ubyte.gz"] in str(e.value)
    assert str(dest / "t10k-images-idx3-ubyte.gz") in str(e.value)
    names = [p.name for p in dest.iterdir()]
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")]


def test_interrupted_download_leaves_no_partial_file(isolated, monkeypatch):
    serve(isolated, monkeypatch, "fashion_mnist")

    class Broken:
        def __init__(self):
            self.chunks = [b"\x1f\x8b partial"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def info(self):  # the response's headers: no Content-Length
            return {}

        def close(self):
            pass

        def read(self, size):
            if self.chunks:
                return self.chunks.pop()
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *args, **kw: Broken())
    with pytest.raises(DatasetError, match="download failed: .*connection reset"):
        data.load("fashion_mnist")
    assert list((isolated / "cache" / "fashion_mnist").iterdir()) == []


def test_silent_server_times_out(isolated, monkeypatch):
    """A server that accepts the connection and never answers: the download gives up after
    DOWNLOAD_TIMEOUT with a one-line error, leaving nothing behind."""
    import socket

    from bnlab.data import download

    serve(isolated, monkeypatch, "fashion_mnist")
    with socket.create_server(("127.0.0.1", 0)) as server:  # listens, never reads or replies
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        monkeypatch.setitem(data.DATASETS["fashion_mnist"], "urls", (url,))
        monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 0.5)
        with pytest.raises(DatasetError, match="download failed: .*timed out"):
            data.load("fashion_mnist")
    assert socket.getdefaulttimeout() is None  # restored
    assert list((isolated / "cache" / "fashion_mnist").iterdir()) == []


@pytest.mark.parametrize("download", [True, False])
def test_nothing_found_offline_fashion(isolated, download):
    with pytest.raises(DatasetError) as e:
        data.load("fashion_mnist", download=download)
    message = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message
    assert all(f"{stem}.gz" in message for stem in STEMS)
    assert str(isolated / "debian") in message
    assert str(isolated / "cache" / "fashion_mnist") in message
    assert ("download failed" if download else "download=False") in message
    assert [p for p in (isolated / "cache").rglob("*") if p.is_file()] == []


def test_nothing_found_offline_mnist(isolated):
    with pytest.raises(DatasetError) as e:
        data.load("mnist")
    assert "mnist.npz" in str(e.value) and all(stem in str(e.value) for stem in STEMS)
    assert str(isolated / "keras") in str(e.value)


# --- splits and preprocessing ------------------------------------------------------------------

@pytest.fixture
def fake(isolated):
    make_source(isolated / "d", n_train=50, n_test=7, marker=1)
    return isolated / "d"


def test_split_first_n(fake):
    x, y = make_arrays(n_train=50, n_test=7, marker=1)[:2]
    ds = data.load("fashion_mnist", fake, validation=5 + 3)
    np.testing.assert_array_equal(ds.x_val, x[:8])
    np.testing.assert_array_equal(ds.x_train, x[8:])
    np.testing.assert_array_equal(ds.y_train, y[8:])
    assert ds.x_test.shape == (7, 28, 28) and ds.x_train.dtype == np.uint8


@pytest.mark.parametrize("f", [0.2, 0.1, 0.33, 0.5, 0.07])
def test_validation_split_like_keras(fake, f):
    x = make_arrays(n_train=50, n_test=7, marker=1)[0]
    ds = data.load("fashion_mnist", fake, validation_split=f)
    split_at = int(50 * (1 - f))
    np.testing.assert_array_equal(ds.x_train, x[:split_at])
    np.testing.assert_array_equal(ds.x_val, x[split_at:])


def test_no_validation(fake):
    ds = data.load("fashion_mnist", fake, validation=0, preprocessing="scale")
    assert ds.x_val.shape == (0, 28, 28) and ds.y_val.shape == (0,) and len(ds.x_train) == 50
    assert ds.x_val.dtype == np.float32


@pytest.mark.parametrize("kw", [dict(validation=-1), dict(validation=50), dict(validation=2.5),
                                dict(validation=True), dict(validation_split=0.0),
                                dict(validation_split=1.0), dict(validation_split=float("nan")),
                                dict(validation_split=0.2, validation=0),
                                dict(preprocessing="normalize")])
def test_bad_split_arguments(fake, kw):
    with pytest.raises(ValueError):
        data.load("fashion_mnist", fake, **kw)


def test_scale(fake):
    raw = data.load("fashion_mnist", fake, validation=5)
    ds = data.load("fashion_mnist", fake, validation=5, preprocessing="scale")
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    np.testing.assert_allclose(ds.x_test, raw.x_test / 255.0, rtol=1e-6)


def test_standardize_uses_training_statistics_only(fake):
    x = make_arrays(n_train=50, n_test=7, marker=1)[0]
    x[:10] //= 4  # darker validation images: their own statistics would differ from train's
    write_idx(fake / "train-images-idx3-ubyte.gz", x)
    raw = data.load("fashion_mnist", fake, validation=10)
    ds = data.load("fashion_mnist", fake, validation=10, preprocessing="standardize")
    assert ds.x_train.dtype == ds.x_val.dtype == ds.x_test.dtype == np.float32
    assert abs(ds.x_train.mean()) < 1e-5 and abs(ds.x_train.std() - 1) < 1e-5
    train = raw.x_train.astype(np.float64)
    mean, std = train.mean(), train.std()  # ddof=0, as StandardScaler
    for split in ("x_train", "x_val", "x_test"):
        expected = (getattr(raw, split).astype(np.float64) - mean) / std
        np.testing.assert_allclose(getattr(ds, split), expected, atol=1e-5)
    assert ds.x_val.mean() < -0.5  # not standardized with its own statistics
    again = data.preprocess(raw, "standardize")
    np.testing.assert_array_equal(again.x_val, ds.x_val)
    assert again.source == raw.source and again.class_names == raw.class_names
    with pytest.raises(ValueError, match="already preprocessed"):
        data.preprocess(ds, "scale")
    assert data.preprocess(raw, None) is raw


# --- parsed-array cache ------------------------------------------------------------------------

def test_parsed_cache_written_then_used(fake, isolated, monkeypatch):
    first = data.load("fashion_mnist", fake, validation=5)
    entries = list((isolated / "cache" / "arrays").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("fashion_mnist-")
    assert sorted(p.name for p in entries[0].iterdir()) == [
        "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]

    def boom(path):
        raise AssertionError(f"re-parsed {path}")
    monkeypatch.setattr(data, "read_idx", boom)
    second = data.load("fashion_mnist", fake, validation=5)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
        assert getattr(first, field).dtype == getattr(second, field).dtype
    assert second.source == str(fake)

    path = fake / "t10k-labels-idx1-ubyte.gz"
    os.utime(path, ns=(1, 1))  # the same content, touched: still served from the cache
    assert data.load("fashion_mnist", fake, validation=5).y_test.tolist() == first.y_test.tolist()
    write_idx(path, np.asarray(first.y_test[::-1], np.uint8))  # a changed file is parsed again
    with pytest.raises(AssertionError, match="re-parsed"):
        data.load("fashion_mnist", fake, validation=5)


def test_damaged_cache_entry_is_rebuilt(fake, isolated):
    data.load("fashion_mnist", fake, validation=5)
    entry = next((isolated / "cache" / "arrays").iterdir())
    (entry / "x_train.npy").write_bytes(b"garbage")
    ds = data.load("fashion_mnist", fake, validation=5)
    assert ds.x_train.shape == (45, 28, 28)
    assert np.load(entry / "x_train.npy").shape == (50, 28, 28)


def test_unwritable_cache_is_skipped(fake, isolated, monkeypatch):
    (isolated / "file").write_text("not a folder")
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(isolated / "file" / "cache"))
    assert data.load("fashion_mnist", fake, validation=5).x_train.shape == (45, 28, 28)


# --- the real Fashion-MNIST --------------------------------------------------------------------

def test_real_fashion_mnist(monkeypatch):
    if not (REAL / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.setitem(data.DEBIAN_DIRS, "fashion_mnist", REAL)
    ds = data.load("fashion_mnist", validation=5000)
    assert ds.source == str(REAL)
    assert ds.x_train.shape == (55000, 28, 28) and ds.x_val.shape == (5000, 28, 28)
    assert ds.x_test.shape == (10000, 28, 28)
    assert (ds.y_train.shape, ds.y_val.shape, ds.y_test.shape) == ((55000,), (5000,), (10000,))
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.class_names == ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                              'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.min() == 0 and y.max() == 9
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


def test_bnlab_offline_turns_downloads_off(monkeypatch):
    monkeypatch.setenv("BNLAB_OFFLINE", "1")
    with pytest.raises(DatasetError, match="downloads are off"):
        data.load("fashion_mnist")


def test_cache_follows_the_content_not_the_size_and_mtime(isolated):
    """A source rewritten in place with the same size and mtime is parsed again, not served from
    the parsed-array cache of its old content."""
    folder = isolated / "d"
    make_source(folder, gz=False, marker=3)
    first = data.load("fashion_mnist", folder, validation=0)
    assert first.y_train[0] == 3
    labels = folder / "train-labels-idx1-ubyte"
    st = os.stat(labels)
    make_source(folder, gz=False, marker=5)  # same shapes, so the same sizes
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(labels).st_size == st.st_size and os.stat(labels).st_mtime_ns == st.st_mtime_ns
    assert data.load("fashion_mnist", folder, validation=0).y_train[0] == 5
    assert len(list((isolated / "cache" / "arrays").iterdir())) == 2  # one entry per content

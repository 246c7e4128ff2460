"""One's own data for ``bnlab check``: a ``.npz``, a ``.npy`` or a folder of images, checked
against the model's input and split into a training part (the population) and a test part.

Accepted forms (``load_user_data``):

- ``.npz`` with ``x_train`` and ``x_test`` (and optionally ``y_train``, ``y_test``: integer class
  labels, or one-hot rows), or with ``x`` (and optionally ``y``): then split, shuffled with seed 0,
  the first 80 % the training part and the rest the test part;
- ``.npy`` of inputs (no labels: the diagnosis without accuracy), split as ``x``;
- a folder of images in one subfolder per class (``keras.utils.image_dataset_from_directory``,
  resized to the model's input size, grayscale or RGB as the model's channels say), with
  ``train/`` and ``test/`` subfolders used as the two parts when both exist, else split 80/20 by
  Keras (``validation_split=0.2, seed=0``).

``layout="nchw"`` says the arrays of a file are PyTorch's channels-first (N, C, *S) while the model
takes (N, *S, C) (a converted PyTorch model of images, volumes or signals): they are transposed; images from a folder are always
read as (H, W, C). Every problem raises ``DatasetError`` with one line naming what is wrong and the
expected form.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnlab.data.idx import DatasetError, one_line

PREPROCESSING = ("none", "scale", "standardize")
TEST_FRACTION = 0.2
SEED = 0
NPZ_FORM = ("a .npz with x_train and x_test (optional y_train, y_test), or x (optional y)")


@dataclass
class UserData:
    """The two parts, in the model's layout, float32; labels are int arrays or None."""

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    notes: list[str] = field(default_factory=list)  # what was read, split and applied


def load_user_data(path, input_shape, *, num_classes=None, preprocessing="none", limit=None,
                   layout="nhwc") -> UserData:
    """Read ``path`` for a model whose input is ``input_shape`` (per example, no batch axis);
    ``num_classes``: the model's outputs, the bound for labels; ``limit`` caps both parts."""
    path = Path(path)
    if preprocessing not in PREPROCESSING:
        raise DatasetError(f"--preprocessing must be one of {', '.join(PREPROCESSING)}, "
                           f"not {preprocessing!r}")
    if not path.exists():
        raise DatasetError(f"no data at {path}: expected {NPZ_FORM}, a .npy of inputs, or a "
                           "folder of images in class subfolders")
    if path.is_dir():
        data = _folder(path, input_shape)
    elif path.suffix == ".npz":
        data = _npz(path)
    elif path.suffix == ".npy":
        x = _read(np.load, path, "a .npy of inputs", allow_pickle=False)
        data = _split(path.name, x, None)
    else:
        raise DatasetError(f"{path}: not a .npz, a .npy or a folder; expected {NPZ_FORM}, a "
                           ".npy of inputs, or a folder of images in class subfolders")
    for part in ("x_train", "x_test"):
        setattr(data, part, _fit_shape(path, part, getattr(data, part), input_shape, layout))
        if getattr(data, part).shape[0] == 0:
            raise DatasetError(f"{path}: {part} is empty; give at least one example in each part")
    for part in ("y_train", "y_test"):
        labels = getattr(data, part)
        if labels is not None:
            x = getattr(data, "x" + part[1:])
            setattr(data, part, _labels(path, part, labels, len(x), num_classes))
    if limit is not None:
        data.x_train, data.x_test = data.x_train[:limit], data.x_test[:limit]
        data.y_train = None if data.y_train is None else data.y_train[:limit]
        data.y_test = None if data.y_test is None else data.y_test[:limit]
    _preprocess(data, preprocessing)
    return data


def _read(reader, path, form, **kwargs):
    try:
        return reader(path, **kwargs)
    except Exception as exc:  # any failure to read it means: not the file bnlab reads
        raise DatasetError(f"{path}: cannot be read as {form} ({one_line(exc)})") from None


def _npz(path):
    with _read(np.load, path, NPZ_FORM, allow_pickle=False) as npz:
        keys = set(npz.files)
        try:
            arrays = {k: npz[k] for k in keys}
        except Exception as exc:
            raise DatasetError(f"{path}: cannot be read as {NPZ_FORM} ({one_line(exc)})") from None
    if {"x_train", "x_test"} <= keys:
        notes = [f"{path.name}: x_train as the training part, x_test as the test part"]
        return UserData(arrays["x_train"], arrays.get("y_train"), arrays["x_test"],
                        arrays.get("y_test"), notes)
    if "x" in keys:
        return _split(path.name, arrays["x"], arrays.get("y"))
    raise DatasetError(f"{path}: has keys {sorted(keys)}; expected {NPZ_FORM}")


def _split(name, x, y):
    """Shuffled with seed 0: the first 80 % the training part, the rest the test part."""
    if x.ndim == 0 or len(x) < 2:
        raise DatasetError(f"{name}: {len(x) if x.ndim else 0} examples; give at least 2 to "
                           "split into a training and a test part")
    if y is not None and len(y) != len(x):
        raise DatasetError(f"{name}: {len(x)} inputs x but {len(y)} labels y; expected one "
                           "label per input")
    order = np.random.default_rng(SEED).permutation(len(x))
    cut = max(1, min(len(x) - 1, round(len(x) * (1 - TEST_FRACTION))))
    train, test = order[:cut], order[cut:]
    note = (f"{name}: {len(x)} examples shuffled with seed {SEED}, the first {cut} the training "
            f"part, the last {len(x) - cut} the test part")
    return UserData(x[train], None if y is None else y[train], x[test],
                    None if y is None else y[test], [note])


def _fit_shape(path, part, x, input_shape, layout):
    """``x`` as (N, *input_shape): transposed from (N, C, *S) when ``layout="nchw"``, and a
    channel axis of 1 added when the model wants one the data lacks."""
    want = tuple(input_shape)
    shown = (want[-1], *want[:-1]) if layout == "nchw" and len(want) >= 2 else want
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise DatasetError(f"{path}: {part} holds {x.dtype}, not numbers; expected an array of "
                           f"shape (N, {', '.join(map(str, shown))})")
    if layout == "nchw" and x.ndim == len(want) + 1 and x.ndim >= 3:
        x = np.moveaxis(x, 1, -1)
    if x.ndim >= 1 and tuple(x.shape[1:]) + (1,) == want:
        x = x[..., None]
    if x.ndim < 1 or tuple(x.shape[1:]) != want:
        raise DatasetError(f"{path}: {part} has shape {tuple(x.shape)}; the model wants "
                           f"(N, {', '.join(map(str, shown))})")
    return x.astype("float32")


def _labels(path, part, y, n, num_classes):
    if y.ndim == 2 and num_classes is not None and y.shape[1] == num_classes:
        y = np.argmax(y, axis=1)  # one-hot rows
    if y.shape != (n,) or not (np.issubdtype(y.dtype, np.integer)
                               or np.array_equal(y, np.round(y))):
        raise DatasetError(f"{path}: {part} has shape {tuple(y.shape)} and dtype {y.dtype}; "
                           f"expected {n} integer class labels (or one-hot rows)")
    y = y.astype(np.int64)
    bound = f"0..{num_classes - 1}" if num_classes else "0 or more"
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise DatasetError(f"{path}: {part} holds labels {y.min()}..{y.max()}; the model has "
                           f"{num_classes} outputs, so labels must lie in {bound}")
    return y


def _preprocess(data, how):
    """``scale``: divided by 255; ``standardize``: one mean and one standard deviation, from the
    training part, for both parts; ``none``: as read."""
    if how == "scale":
        data.x_train, data.x_test = data.x_train / np.float32(255), data.x_test / np.float32(255)
        data.notes.append("preprocessing: scale (divided by 255)")
    elif how == "standardize":
        mean = float(np.mean(data.x_train, dtype=np.float64))
        std = float(np.std(data.x_train, dtype=np.float64)) or 1.0
        data.x_train = ((data.x_train - mean) / std).astype("float32")
        data.x_test = ((data.x_test - mean) / std).astype("float32")
        data.notes.append(f"preprocessing: standardize ((x - {mean:.4g}) / {std:.4g}, from the "
                          "training part)")
    else:
        data.notes.append("preprocessing: none (the inputs as read; --preprocessing scale "
                          "divides by 255)")


def _folder(path, input_shape):
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3, 4):
        raise DatasetError(f"{path}: a folder of images needs a model whose input is (H, W, C) "
                           f"with C 1, 3 or 4; this one takes {tuple(input_shape)}")
    train, test = path / "train", path / "test"
    if train.is_dir() and test.is_dir():
        (x_train, y_train, names), (x_test, y_test, test_names) = (
            _images(train, input_shape), _images(test, input_shape))
        if test_names != names:
            raise DatasetError(f"{path}: train/ has classes {names} but test/ has {test_names}; "
                               "expected the same class subfolders in both")
        note = f"{path.name}: train/ as the training part, test/ as the test part"
    else:
        (x_train, y_train, names), (x_test, y_test, _) = _images(path, input_shape, split=True)
        note = (f"{path.name}: split by Keras (validation_split={TEST_FRACTION}, seed={SEED}): "
                f"{len(x_train)} training, {len(x_test)} test images")
    notes = [note, f"classes {', '.join(names)}; images resized to {input_shape[0]}x"
                   f"{input_shape[1]}, pixel values 0..255"]
    return UserData(x_train, y_train, x_test, y_test, notes)


def _images(folder, input_shape, split=False):
    import keras  # reads through tf.data: imported only for folders

    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not subfolders:
        raise DatasetError(f"{folder}: no class subfolders; expected a folder with one "
                           "subfolder of images per class (e.g. cats/, dogs/)")
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[input_shape[-1]]
    options = dict(labels="inferred", label_mode="int", color_mode=mode, batch_size=None,
                   image_size=tuple(input_shape[:2]), shuffle=split, seed=SEED, verbose=False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Using N files for ..."
            if split:
                parts = keras.utils.image_dataset_from_directory(
                    folder, validation_split=TEST_FRACTION, subset="both", **options)
            else:
                parts = [keras.utils.image_dataset_from_directory(folder, **options)]
    except ValueError as exc:  # Keras's message for no images, or too few to split
        raise DatasetError(f"{folder}: {one_line(exc)}; expected image files (jpeg, png, bmp, "
                           "gif) in one subfolder per class") from None
    out = []
    for part in parts:
        pairs = list(part.as_numpy_iterator())
        if not pairs:
            raise DatasetError(f"{folder}: too few images to make a training and a test part")
        x = np.stack([p[0] for p in pairs]).astype("float32")
        out.append((x, np.array([p[1] for p in pairs], dtype=np.int64), parts[0].class_names))
    return out if split else out[0]

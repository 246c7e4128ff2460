"""`bnlab check MODEL --data DATA` on one's own .npz, .npy and image folders; bad data exits 2."""

import json

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab.cli import main
from bnlab.data import arrays
from bnlab.data.idx import DatasetError

N = 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small conv model on 8x8 grayscale images, saved, and its data in every form."""
    folder = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    y = np.arange(N) % 3
    x = rng.integers(0, 256, size=(N, 8, 8, 1)).astype("uint8")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.Flatten(), keras.layers.Dense(3, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(folder / "model.keras")
    np.savez(folder / "parts.npz", x_train=x[:150], y_train=y[:150], x_test=x[150:],
             y_test=y[150:])
    np.savez(folder / "xy.npz", x=x[..., 0], y=y)
    np.save(folder / "x.npy", x)
    images = folder / "images"
    for i in range(40):
        (images / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        keras.utils.save_img(images / f"class{i % 2}" / f"{i}.png", x[i], scale=False)
    return folder


def run(setup, capsys, *args):
    code = main(["check", str(setup / "model.keras"), "--json", "--batch-size", "8", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err.strip()


def test_npz_with_parts_and_labels(setup, capsys):
    code, result, _ = run(setup, capsys, "--data", str(setup / "parts.npz"), "--preprocessing",
                          "scale")
    assert code == 0
    assert result["images"] == {"population": 150, "scored": 50}
    assert result["modes"]["inference"]["accuracy"] is not None
    assert any("divided by 255" in note for note in result["data"])


def test_npz_x_y_is_split_and_says_how_and_limit_caps_both(setup, capsys):
    code, result, _ = run(setup, capsys, "--data", str(setup / "xy.npz"), "--limit", "100")
    assert code == 0
    assert result["images"] == {"population": 100, "scored": 40}
    assert "shuffled with seed 0, the first 160 the training part" in result["data"][0]
    assert "preprocessing: none" in result["data"][-1]


def test_npy_has_no_accuracy(setup, capsys):
    code, result, _ = run(setup, capsys, "--data", str(setup / "x.npy"))
    assert code == 0
    assert result["modes"]["inference"]["accuracy"] is None


def test_image_folder_is_split_by_keras(setup, capsys):
    code, result, err = run(setup, capsys, "--data", str(setup / "images"))
    assert code == 0, err
    assert result["images"] == {"population": 32, "scored": 8}
    assert any("class0, class1" in note for note in result["data"])


def test_user_data_values_and_layout():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3, 4, 5)).astype("float32")
    path = "/nonexistent"
    with pytest.raises(DatasetError, match="no data at"):
        arrays.load_user_data(path, (4, 5, 3))
    data = arrays._split("x", x, None)
    assert len(data.x_train) == 8 and len(data.x_test) == 2
    fitted = arrays._fit_shape("f", "x_train", x, (4, 5, 3), "nchw")
    np.testing.assert_array_equal(fitted, x.transpose(0, 2, 3, 1))


def test_bad_data_is_one_line_and_exit_2(setup, capsys, tmp_path):
    x = np.zeros((20, 8, 8, 1), "float32")
    np.savez(tmp_path / "keys.npz", images=x)
    np.savez(tmp_path / "shape.npz", x=np.zeros((20, 9, 9)))
    np.savez(tmp_path / "labels.npz", x=x, y=np.full(20, 7))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    cases = [(tmp_path / "missing.npz", "no data at"), (tmp_path / "keys.npz", "has keys"),
             (tmp_path / "shape.npz", "the model wants (N, 8, 8, 1)"),
             (tmp_path / "labels.npz", "labels must lie in 0..2"),
             (tmp_path / "empty", "no class subfolders"),
             (tmp_path / "notes.txt", "not a .npz, a .npy or a folder"),
             ("imagenet", "unknown dataset")]
    for data, words in cases:
        code, _, err = run(setup, capsys, "--data", str(data))
        assert code == 2 and words in err and len(err.splitlines()) == 1, (data, err)

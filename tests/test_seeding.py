"""bnlab.seeding.set_seed against keras.utils.set_random_seed, on each backend, in a fresh process
(a test process has TensorFlow imported already, which set_seed then seeds as Keras does)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend

SCRIPT = r"""
import json, random, sys
import keras, numpy as np
from bnlab.seeding import set_seed
from keras.src.utils import rng_utils  # its getter is not public

def draws():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    out = {"python": random.random(), "numpy": np.random.rand(3).tolist(),
           "keras": keras.ops.convert_to_numpy(keras.random.normal((3,))).tolist(),
           "dense": keras.ops.convert_to_numpy(layer.kernel).ravel().tolist(),
           "seed": rng_utils.get_random_seed()}
    if keras.backend.backend() == "torch":
        import torch
        out["torch"] = torch.rand(3).tolist()
    return out

set_seed(5)
ours = draws()
ours_imported_tf = "tensorflow" in sys.modules
keras.utils.set_random_seed(5)
print(json.dumps({"ours": ours, "keras": draws(), "tf": ours_imported_tf}))
"""


def test_set_seed_seeds_as_keras_does_without_importing_tensorflow_elsewhere():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["ours"] == got["keras"]
    assert got["ours"]["seed"] == 5
    backend = os.environ.get("KERAS_BACKEND", "jax")
    assert got["tf"] == (backend == "tensorflow"), "TensorFlow imported off its own backend"


def test_set_seed_refuses_a_seed_that_is_not_an_int():
    from bnlab.seeding import set_seed

    with pytest.raises(ValueError):
        set_seed(1.5)

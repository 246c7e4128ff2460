"""One seed for a trial's randomness: ``set_seed(seed)``, the lab's ``keras.utils.set_random_seed``.

Keras's function seeds Python's ``random``, NumPy's global generator, the backend (PyTorch's
``manual_seed``), its own global ``SeedGenerator`` and, whenever TensorFlow is installed,
TensorFlow, for the ``tf.data`` pipelines of other backends' users. bnlab feeds no ``tf.data``
pipeline off TensorFlow, and importing TensorFlow there costs a process about 3 s and its memory
(bench/tried.md), so here TensorFlow is seeded only when it is the backend or already imported.
Everything else is seeded exactly as Keras does (tests/test_seeding.py holds the two equal).
"""

import random
import sys

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
from keras.src.utils import rng_utils


def set_seed(seed):
    """Seed Python, NumPy, the backend and Keras's global seed generator with ``seed`` (an int)."""
    if not isinstance(seed, int):
        raise ValueError(f"a seed must be an int, not {seed!r}")
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    # Keras's own steps, in its order, less TensorFlow's (keras/src/utils/rng_utils.py)
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)

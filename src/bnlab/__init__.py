"""bnlab — a batch-normalization laboratory.

Importing bnlab picks Keras's backend only when the user has not: if ``KERAS_BACKEND`` is unset,
bnlab sets it to ``jax``, the fastest backend measured on the project's machines (see
docs/performance.md). Keras reads the variable once, when it is first imported, so this lives in
the package's ``__init__`` and runs before any bnlab module imports Keras. (Keras's own
``~/.keras/keras.json`` is not taken as a choice: Keras writes that file itself on first import.)
"""

import os

__version__ = "0.1.0"

DEFAULT_BACKEND = "jax"

os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
# TensorFlow, when installed, can be imported on the other backends too (by a Keras utility that
# seeds or reads it; bnlab's own seeding avoids that, bnlab.seeding): keep its C++ logs quiet.
# There it runs no model, so its oneDNN kernels, which announce themselves on stderr at import,
# are turned off; on the TensorFlow backend they stay on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ["KERAS_BACKEND"] != "tensorflow":
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

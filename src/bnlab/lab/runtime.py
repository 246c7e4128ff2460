"""The process's set-up for JAX: XLA's CPU options and the on-disk cache of compiled programs.

Both are per process and must be chosen before its first JAX operation; the executors and the
sweep call them (``bnlab.lab.executors``, ``bnlab.lab.sweep``), and so do the tests' conftest.
"""

import os

import keras

from bnlab import data as bndata
from bnlab import models


def enable_compilation_cache(path=None):
    """Keep JAX's compiled XLA programs on disk: in ``path``, else JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` where it is set, else bnlab's cache folder's ``jax/``.

    Every new Keras model compiles its train step and its weight initializers afresh, about 3 s
    for the seed MLPs and 20 s for the deep CNN on two cores. The programs of the same
    architecture are identical whatever the seed, so with this cache the next trial, or the next
    process, loads them instead. No effect on other backends.
    """
    if keras.backend.backend() != "jax":
        return
    import jax

    path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or bndata.cache_dir() / "jax"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


YNNPACK_OFF = "--xla_cpu_experimental_ynn_fusion_type="  # an empty list of YNNPACK fusions
YNNPACK_REDUCTIONS = "--xla_cpu_experimental_ynn_fusion_type=reduce"  # reductions only


def configure_xla(vectorized, convolutional=False):
    """Pick XLA's CPU options for this process; call it before the process's first JAX op.

    XLA reads its flags when JAX starts its CPU backend, once per process: a later call changes
    nothing. A YNNPACK flag the user put in ``XLA_FLAGS`` is kept. No effect on other backends.
    What it picks, each the fastest measured (the numbers: bench/tried.md, "XLA's options"):

    - ``convolutional`` (the process trains a conv model): YNNPACK for reductions only
      (``YNNPACK_REDUCTIONS``): XLA's own CPU code is slow at reducing a conv layer's
      (N, H, W, C) tensor over N, H, W, and a batch norm takes five such reductions a step.
    - dense models, seeds together (``vectorized``): jaxlib's default, YNNPACK's matrix
      products, which run the K-seed programs of ``bnlab.lab.multiseed`` fastest.
    - dense models, one seed at a time: YNNPACK off (``YNNPACK_OFF``), faster for one seed's
      small matrix products and reductions.
    """
    if keras.backend.backend() != "jax":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return
    if convolutional:
        choice = YNNPACK_REDUCTIONS
    elif not vectorized:
        choice = YNNPACK_OFF
    else:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {choice}".strip()


def trains_convolutions(configs):
    """Whether any of ``configs`` trains a model with convolutions (``configure_xla``)."""
    return any(c["model"]["name"] in models.CONVOLUTIONAL for c in configs)

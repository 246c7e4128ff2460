"""Shared test set-up: no network, no writes to the user's caches, real Fashion-MNIST when present."""

import os
from pathlib import Path

import pytest

# The tests' programs are tiny and each runs a few times, so XLA's compile time dominates: compile
# them at LLVM's lowest level (set before JAX starts; the CLI subprocesses inherit it).
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

import bnlab  # noqa: E402,F401  (picks bnlab's default backend before a test module imports keras)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# The files of the most test-seconds, most first (make test's --durations on the 2-core hosts).
# `make test` hands whole files to its two workers (``--dist loadfile --no-loadscope-reorder``),
# in this order: a file's module fixtures and compiled programs are built in one worker, and the
# longest files start first, so the two workers finish together.
LONGEST_FILES = ("test_multiseed", "test_hostile", "test_literature_smoothness",
                 "test_literature_dropout_finetune", "test_ray_cluster", "test_executors",
                 "test_layer_family", "test_examples", "test_literature_studies", "test_studies")


def pytest_collection_modifyitems(config, items):
    """The LONGEST_FILES first, in their order, then the rest as collected; a file's tests stay
    together."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2],
                                         len(LONGEST_FILES)))  # stable


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory):
    """Offline, with bnlab's cache in a temporary folder for the whole session."""
    from bnlab.lab import runtime

    saved = {k: os.environ.get(k) for k in ("BNLAB_CACHE_DIR", "BNLAB_OFFLINE", "BNLAB_DATA_DIR")}
    os.environ["BNLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("bnlab-cache"))
    os.environ["BNLAB_OFFLINE"] = "1"
    os.environ.pop("BNLAB_DATA_DIR", None)
    runtime.enable_compilation_cache()  # shared by this process's tests and the commands they start
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def fashion_mnist():
    """Skip when Debian's dataset-fashion-mnist is not installed (`make test` installs it)."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DIR}: apt-get install "
                    "dataset-fashion-mnist")
    return FASHION_DIR

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


def pytest_collection_modifyitems(config, items):
    """The files with a slow test first, each file's tests still together, so that under
    ``pytest -n 2`` the two workers finish together. Every test goes to whichever worker is free:
    pytest-xdist's ``xdist_group`` marks do not take effect with this pytest (checked: a module's
    ``pytestmark = pytest.mark.xdist_group(...)`` tests ran on both workers), so the
    tests assume no grouping (the Ray files' clusters, a module fixture built once per worker)."""
    slow = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow)  # stable


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory):
    """Offline, with bnlab's cache in a temporary folder for the whole session."""
    from bnlab.lab import runtime

    saved = {k: os.environ.get(k) for k in ("BNLAB_CACHE_DIR", "BNLAB_OFFLINE", "BNLAB_DATA_DIR",
                                            "JAX_COMPILATION_CACHE_DIR")}
    os.environ["BNLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("bnlab-cache"))
    os.environ["BNLAB_OFFLINE"] = "1"
    os.environ.pop("BNLAB_DATA_DIR", None)
    # one program cache for the session's workers (pytest-xdist's share a parent folder) and the
    # commands they start
    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session = session.parent
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(session / "jax")
    runtime.enable_compilation_cache()
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

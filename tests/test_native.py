"""bnlab.layers.native: the C++ kernel of the folded input BN's ∂γ and ∂β, against the XLA form
it replaces (layers.folded_dense), and the fallback where it cannot be built."""

import os
import shutil

import numpy as np
import pytest

from backend_utils import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "jax", reason="an XLA FFI kernel: JAX's")
compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "c++") is None,
                              reason="no C++ compiler here: bnlab uses XLA's form (tested below)")


def _xla_form(w, p, s):
    """What folded_dense computes without the kernel: Σ_u W ⊙ P and W s."""
    import jax.numpy as jnp

    return jnp.sum(w * p, axis=-1), jnp.einsum("...du,...u->...d", w, s)


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    w, p = (rng.standard_normal(shape, dtype=np.float32) for _ in range(2))
    return w, p, rng.standard_normal(shape[:-2] + shape[-1:], dtype=np.float32)


def _close(got, want):
    for g, v in zip(got, want):
        assert g.shape == v.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(v), rtol=1e-5,
                                   atol=1e-5 * float(np.abs(v).max()))


@compiler
@pytest.mark.parametrize("shape", [(1, 3), (5, 7), (784, 300), (3, 11, 9)])
def test_the_kernel_equals_the_xla_form(shape):
    """Odd sizes included: one row (the second half empty), rows not split evenly, seeds."""
    import jax

    from bnlab.layers import native

    assert native.available(), "the host has a compiler: the kernel should build"
    args = _arrays(shape)
    _close(jax.jit(native.row_dots)(*args), _xla_form(*args))


@compiler
def test_the_kernel_maps_over_seeds_with_s_shared_or_per_seed():
    import jax

    from bnlab.layers import native

    w, p, s = _arrays((4, 6, 10), seed=1)
    want = _xla_form(w, p, s)
    _close(jax.jit(jax.vmap(native.row_dots))(w, p, s), want)
    shared = jax.vmap(native.row_dots, in_axes=(0, 0, None))(w, p, s[0])
    _close(shared, _xla_form(w, p, np.broadcast_to(s[0], s.shape)))


@compiler
def test_the_folded_gradient_runs_the_kernel():
    """The compiled gradient of folded_dense calls the kernel: it is not merely built."""
    import jax

    from bnlab.layers.folded_dense import folded_dense

    rng = np.random.default_rng(2)
    z, kernel = rng.standard_normal((8, 6), "float32"), rng.standard_normal((6, 4), "float32")
    gamma, beta = np.ones(6, "float32"), np.zeros(6, "float32")

    def loss(gamma, beta):
        return folded_dense(z, gamma, beta, kernel).sum()
    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(gamma, beta).as_text()
    assert "bnlab_row_dots" in text


@compiler
def test_without_the_kernel_folded_dense_keeps_the_xla_form(monkeypatch):
    import jax

    from bnlab.layers import native
    from bnlab.layers.folded_dense import folded_dense

    rng = np.random.default_rng(3)
    z, kernel = rng.standard_normal((8, 6), "float32"), rng.standard_normal((6, 4), "float32")
    gamma, beta = rng.standard_normal(6, "float32"), rng.standard_normal(6, "float32")

    def grads():
        f = jax.jit(jax.grad(lambda g, b: (folded_dense(z, g, b, kernel) ** 2).sum(), (0, 1)))
        return f.lower(gamma, beta).as_text(), f(gamma, beta)
    text, with_kernel = grads()
    assert "bnlab_row_dots" in text
    monkeypatch.setenv("BNLAB_NATIVE", "0")
    native.available.cache_clear()
    try:
        text, without = grads()
        assert "bnlab_row_dots" not in text
    finally:
        native.available.cache_clear()
    _close(with_kernel, without)


def test_a_failed_build_warns_once_and_leaves_nothing_behind(monkeypatch, tmp_path):
    from bnlab.layers import native

    compiler = tmp_path / "c++"
    compiler.write_text("#!/bin/sh\necho 'error: no such thing' >&2\nexit 3\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(OSError, match="exited with 3: error: no such thing"):
        native.library_path()
    assert list((tmp_path / "cache" / "kernels").iterdir()) == []  # no half-written library
    monkeypatch.setattr(native, "_registered", [])
    native.available.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="XLA computes BN and its gradients instead"):
            assert native.available() is False
    finally:
        native.available.cache_clear()


@compiler
def test_processes_building_at_once_compile_once_and_each_load_it(tmp_path, monkeypatch):
    """Two processes start at once with an empty cache: the compiler runs once (the other process
    waits for that build), each loads the library, and the folder holds it and nothing else.
    Asked again, the cache answers with that library, not rebuilt."""
    import subprocess
    import sys

    from bnlab.layers import native

    calls = tmp_path / "calls"
    compiler = tmp_path / "c++"  # the real compiler, each call counted
    real = shutil.which(os.environ.get("CXX") or "c++")
    compiler.write_text(f'#!/bin/sh\necho call >> "{calls}"\nexec "{real}" "$@"\n')
    compiler.chmod(0o755)
    cache = tmp_path / "cache"
    script = ("import ctypes; from bnlab.layers import native; "
              "ctypes.cdll.LoadLibrary(str(native.library_path())).BnlabBatchNormForward")
    env = {**os.environ, "BNLAB_CACHE_DIR": str(cache), "KERAS_BACKEND": "jax",
           "CXX": str(compiler)}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    assert calls.read_text() == "call\n"
    (built,) = (cache / "kernels").iterdir()
    assert built.name.startswith("bnlab-") and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("CXX", str(compiler))
    assert native.library_path() == built and built.stat().st_mtime_ns == stamp
    assert calls.read_text() == "call\n"


@compiler
def test_a_build_held_by_a_hung_process_is_waited_for_only_so_long(tmp_path, monkeypatch):
    """Another holder of the build lock that never lets go (a process stopped mid-build): this
    process waits at most WAIT_SECONDS, then builds its own library."""
    import fcntl
    import time

    from bnlab.layers import native

    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "WAIT_SECONDS", 0.3)
    monkeypatch.setattr(native, "_build", lambda compiler: lambda path: path.write_text("built"))
    (tmp_path / "kernels").mkdir()
    holder = os.open(tmp_path / "kernels", os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        start = time.monotonic()
        path = native.library_path()
        waited = time.monotonic() - start
    finally:
        os.close(holder)
    assert path.read_text() == "built" and waited >= 0.3  # it did wait for the lock

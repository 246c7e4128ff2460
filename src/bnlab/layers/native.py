"""Kernels in C++ for what XLA's CPU code runs slowly, called through XLA's FFI (JAX on a CPU).

    available() -> bool              whether the kernels are built and registered in this process
    applies(*arrays) -> bool         available() and every array float32
    row_dots(W, P, s) -> (g, b)      g = Σ_u W ⊙ P and b = W s, over the last axis of W
    batch_norm(x, γ, β, ε) -> (y, μ, σ²)
                                     BN's training-mode forward over x's rows, differentiable:
                                     one call forward and one backward (``batch_norm.cc``)
    batch_norm_channels_last(x, γ, β, ε) -> (y, μ, σ²)
                                     the same over every axis of x but the last, any rank

``row_dots`` is the input BN's ∂γ and ∂β in ``layers.folded_dense``. Shapes: W and P (…, D, U),
s (…, U), g and b (…, D), float32; any leading axes, ``jax.vmap`` included. XLA computes the two as
separate kernels, a row sum of W ⊙ P and a matrix-vector product, which read W twice at about a
third of the rate of XLA's own elementwise loops (bench/tried.md). The kernel, ``row_dots.cc``,
reads W and P once, its rows in chunks on two threads (``parallel.h``): bench/input_bn.py,
docs/performance.md.
Its sums run in another order than XLA's, so the two agree to float32 round-off, not bit for bit.

``batch_norm`` is BN over every axis of x but the last (x (…, R, C), γ and β (…, C)): the batch
statistics and y = γ (x − μ) / √(σ² + ε) + β in one call, and its gradient (the closed form of
``layers.closed_form``, with the cotangents of μ and σ² too) in another. XLA runs BN as five
reductions and as many elementwise loops, each a kernel of its own (bench/bn.py). The statistics
are the biased ones of ``statistics.moments``, summed in one pass over x − o instead of two, o
the mean of the first rows (``batch_norm.cc``): as stable as two passes at any offset of the
mean, unless those rows sit many σ from it. Its users update the moving statistics from the μ and
σ² it returns (``layers.native_bn``). The NumPy reference holds it in the tests.

The kernels are built on first use by the host's C++ compiler (``$CXX``, else ``c++``), against
the FFI headers jaxlib ships (``jax.ffi.include_dir()``), for this host's CPU, into one library
in ``paths.cache_dir()/kernels/``, named by a hash of the sources, the flags, jaxlib's version
and the CPU, and written under a temporary name and then renamed, so no process ever loads a
half-written library; a process that finds another building it waits for that build. Where they
cannot be used (another Keras backend, JAX on a GPU, no compiler, or ``BNLAB_NATIVE=0``),
``available()`` is False and callers keep their XLA form. The tests hold the kernels to that
form.
"""

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import keras
import numpy

from bnlab.paths import cache_dir, write_whole

SOURCES = tuple(Path(__file__).with_name(name) for name in ("row_dots.cc", "batch_norm.cc"))
HEADERS = (Path(__file__).with_name("parallel.h"),)
TARGETS = {"bnlab_row_dots": "BnlabRowDots", "bnlab_bn_forward": "BnlabBatchNormForward",
           "bnlab_bn_backward": "BnlabBatchNormBackward"}  # XLA's name: the library's symbol
# Reassociation, and sqrt without errno (no change to a value, NaN or infinity): vector lanes.
FLAGS = ("-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
         "-fno-math-errno",
         "-std=c++17", "-shared", "-fPIC", "-w")
BUILD_SECONDS = 120
WAIT_SECONDS = BUILD_SECONDS + 10  # for another process's build: its compile and its rename
_registered = []  # the library, once registered: XLA keeps a target for the process's life


def _cpu():
    """The host CPU's model and feature flags (``-march=native`` builds for them)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))


def library_path():
    """The built kernel for this host, built first if it is not in the cache (OSError if not)."""
    import jaxlib

    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        raise OSError(f"no C++ compiler {compiler!r} on the PATH")
    parts = [*(f.read_text() for f in SOURCES + HEADERS), *FLAGS, compiler, jaxlib.__version__,
             platform.machine(), _cpu()]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    path = cache_dir() / "kernels" / f"bnlab-{key}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _building(path.parent):
        if not path.exists():  # not built by the process this one waited for
            write_whole(path, _build(compiler), suffix=".so")
    return path


def _build(compiler):
    """``write(temporary)`` for ``write_whole``: the sources compiled into ``temporary``."""
    import jax

    def build(temporary):
        command = [compiler, *FLAGS, "-I", jax.ffi.include_dir(), *map(str, SOURCES),
                   "-o", str(temporary)]
        try:
            built = subprocess.run(command, capture_output=True, text=True,
                                   timeout=BUILD_SECONDS)
        except subprocess.TimeoutExpired:
            raise OSError(f"{compiler} ran past {BUILD_SECONDS} s") from None
        if built.returncode != 0:
            raise OSError(f"{compiler} exited with {built.returncode}: "
                          + (built.stderr.strip().splitlines() or [""])[-1])
    return build


@contextlib.contextmanager
def _building(folder):
    """Held while this process builds into ``folder``: a process that finds another building
    waits for it (a lock on the folder itself, so no file is left behind), at most
    WAIT_SECONDS, then builds anyway. So processes started at once (Ray's workers, two
    terminals) compile the kernels once, not once each."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            except OSError:  # no locks on this file system: each process builds its own
                break
        yield
    finally:
        os.close(handle)  # releases the lock


@functools.cache
def available():
    """Whether ``row_dots`` runs the C++ kernel here (the module docstring says when it can)."""
    if os.environ.get("BNLAB_NATIVE", "1") == "0" or keras.backend.backend() != "jax":
        return False
    import jax

    if jax.default_backend() != "cpu":
        return False
    if not _registered:
        try:
            library = ctypes.cdll.LoadLibrary(str(library_path()))
            capsules = {t: jax.ffi.pycapsule(getattr(library, s)) for t, s in TARGETS.items()}
        except (OSError, AttributeError) as exc:
            warnings.warn(f"bnlab: the C++ kernels are not built ({exc}); XLA computes BN and "
                          "its gradients instead, more slowly", RuntimeWarning, stacklevel=2)
            return False
        for target, capsule in capsules.items():
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
        _registered.append(library)
    return True


def applies(*arrays):
    """``available()`` and every one of ``arrays`` float32 (the kernel's only type)."""
    return available() and all(keras.backend.standardize_dtype(a.dtype) == "float32"
                               for a in arrays)


def row_dots(w, p, s):
    """(Σ_u W ⊙ P, W s) by the C++ kernel; call it only where ``applies(w, p, s)``."""
    import jax

    _require()
    out = jax.ShapeDtypeStruct(w.shape[:-1], w.dtype)
    return jax.ffi.ffi_call("bnlab_row_dots", (out, out), vmap_method="broadcast_all")(w, p, s)


def batch_norm(x, gamma, beta, epsilon):
    """(y, μ, σ²) of BN over x's rows (module docstring) by the C++ kernels, differentiable in x,
    γ and β (through y, μ and σ²); call it only where ``applies(x, gamma, beta)``.

    x: (…, R, C); gamma, beta: (C,) or (…, C) as x's leading axes; epsilon: a Python float.
    """
    _require()
    return _batch_norm()(x, gamma, beta, float(epsilon))


def batch_norm_channels_last(x, gamma, beta, epsilon):
    """``batch_norm`` over every axis of x (any rank ≥ 2) but the last: y as x, μ and σ² (C,)."""
    y, mean, variance = batch_norm(x.reshape(-1, x.shape[-1]), gamma, beta, epsilon)
    return y.reshape(x.shape), mean, variance


def _require():
    if not available():
        raise RuntimeError("bnlab's C++ kernels are not available here; check native.applies() "
                           "before calling them")


@functools.cache
def _batch_norm():
    """``batch_norm`` as a ``jax.custom_vjp`` (made on first use: jax is imported only here)."""
    import jax

    def statistics_shape(x):
        return jax.ShapeDtypeStruct(x.shape[:-2] + x.shape[-1:], x.dtype)

    def forward(x, gamma, beta, epsilon):
        out = (jax.ShapeDtypeStruct(x.shape, x.dtype), statistics_shape(x), statistics_shape(x))
        gamma, beta = (jax.numpy.broadcast_to(t, statistics_shape(x).shape) for t in (gamma, beta))
        return jax.ffi.ffi_call("bnlab_bn_forward", out, vmap_method="broadcast_all")(
            x, gamma, beta, epsilon=numpy.float32(epsilon))

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
    def bn(x, gamma, beta, epsilon):
        return forward(x, gamma, beta, epsilon)

    def bn_forward(x, gamma, beta, epsilon):
        y, mean, variance = forward(x, gamma, beta, epsilon)
        return (y, mean, variance), (x, mean, variance, gamma, beta)

    def bn_backward(epsilon, residuals, cotangents):
        x, mean, variance, gamma, beta = residuals
        dy, d_mean, d_variance = cotangents
        out = (jax.ShapeDtypeStruct(x.shape, x.dtype), statistics_shape(x), statistics_shape(x))
        dx, d_gamma, d_beta = jax.ffi.ffi_call(
            "bnlab_bn_backward", out, vmap_method="broadcast_all")(
            x, dy, mean, variance, jax.numpy.broadcast_to(gamma, mean.shape), d_mean, d_variance,
            epsilon=numpy.float32(epsilon))
        # γ and β given as (C,) for a batch of groups: their gradient is the groups' sum
        return dx, _sum_to(d_gamma, gamma.shape), _sum_to(d_beta, beta.shape)

    bn.defvjp(bn_forward, bn_backward)
    return bn


def _sum_to(t, shape):
    """t summed over its leading axes down to ``shape`` (the transpose of a broadcast)."""
    extra = t.ndim - len(shape)
    return t.sum(axis=tuple(range(extra))) if extra else t

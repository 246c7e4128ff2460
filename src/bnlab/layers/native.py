"""A kernel in C++ for what XLA's CPU code runs slowly, called through XLA's FFI (JAX on a CPU).

    available() -> bool              whether the kernel is built and registered in this process
    applies(*arrays) -> bool         available() and every array float32
    row_dots(W, P, s) -> (g, b)      g = Σ_u W ⊙ P and b = W s, over the last axis of W

``row_dots`` is the input BN's ∂γ and ∂β in ``layers.folded_dense``. Shapes: W and P (…, D, U),
s (…, U), g and b (…, D), float32; any leading axes, ``jax.vmap`` included. XLA computes the two as
separate kernels, a row sum of W ⊙ P and a matrix-vector product, which read W twice at about a
third of the rate of XLA's own elementwise loops (bench/tried.md). The kernel, ``row_dots.cc``,
reads W and P once, half the rows on each of two threads: bench/input_bn.py, docs/performance.md.
Its sums run in another order than XLA's, so the two agree to float32 round-off, not bit for bit.

The kernel is built on first use by the host's C++ compiler (``$CXX``, else ``c++``), against the
FFI headers jaxlib ships (``jax.ffi.include_dir()``), for this host's CPU. It goes into
``paths.cache_dir()/kernels/``, named by a hash of the source, the flags, jaxlib's version and the
CPU, and is written under a temporary name and then renamed, so processes that build it at once
never load a half-written library. Where it cannot be used (another Keras backend, JAX on a GPU,
no compiler, or ``BNLAB_NATIVE=0``), ``available()`` is False and callers keep their XLA form. The
tests hold the kernel to that form.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import keras

from bnlab.paths import cache_dir

SOURCE = Path(__file__).with_name("row_dots.cc")
TARGET = "bnlab_row_dots"
# Reassociation only (no change to NaN, infinities or each product): the sums use vector lanes.
FLAGS = ("-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
         "-std=c++17", "-shared", "-fPIC", "-w")
BUILD_SECONDS = 120
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
    import jax
    import jaxlib

    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        raise OSError(f"no C++ compiler {compiler!r} on the PATH")
    parts = [SOURCE.read_text(), *FLAGS, compiler, jaxlib.__version__, platform.machine(), _cpu()]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    path = cache_dir() / "kernels" / f"row_dots-{key}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".row_dots-", suffix=".so", dir=path.parent)
    os.close(handle)
    try:
        command = [compiler, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", temporary]
        built = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_SECONDS)
        if built.returncode != 0:
            raise OSError(f"{compiler} exited with {built.returncode}: "
                          + (built.stderr.strip().splitlines() or [""])[-1])
        os.replace(temporary, path)
    except subprocess.TimeoutExpired:
        raise OSError(f"{compiler} ran past {BUILD_SECONDS} s") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


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
            capsule = jax.ffi.pycapsule(library.BnlabRowDots)
        except (OSError, AttributeError) as exc:
            warnings.warn(f"bnlab: the input BN's kernel is not built ({exc}); XLA computes its "
                          "gradients instead, more slowly", RuntimeWarning, stacklevel=2)
            return False
        jax.ffi.register_ffi_target(TARGET, capsule, platform="cpu")
        _registered.append(library)
    return True


def applies(*arrays):
    """``available()`` and every one of ``arrays`` float32 (the kernel's only type)."""
    return available() and all(keras.backend.standardize_dtype(a.dtype) == "float32"
                               for a in arrays)


def row_dots(w, p, s):
    """(Σ_u W ⊙ P, W s) by the C++ kernel; call it only where ``applies(w, p, s)``."""
    import jax

    out = jax.ShapeDtypeStruct(w.shape[:-1], w.dtype)
    return jax.ffi.ffi_call(TARGET, (out, out), vmap_method="broadcast_all")(w, p, s)

"""bnlab.lab.runtime: the JAX program cache that processes share (a fresh process, since JAX reads
its cache settings once per process)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax",
                                reason="the program cache is JAX's")

COMPILE_ONE = """
import jax, jax.numpy as jnp
from bnlab.lab import runtime
runtime.enable_compilation_cache()
print(jax.jit(lambda x: jnp.tanh(x) * 3.0)(jnp.arange(5.0)).sum())
"""


def test_two_processes_share_one_bounded_locked_program_cache(tmp_path):
    env = {**os.environ, "BNLAB_CACHE_DIR": str(tmp_path), "KERAS_BACKEND": "jax"}
    runs = [subprocess.run([sys.executable, "-c", COMPILE_ONE], env=env, capture_output=True,
                           text=True, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert runs[0].stdout == runs[1].stdout and "Error" not in runs[1].stderr
    folder = tmp_path / "jax-lru"
    programs = sorted(p.name for p in folder.iterdir() if p.name.endswith("-cache"))
    # bounded: JAX keeps an access time beside each program (its LRU) and a lock file
    assert programs and all((folder / p.replace("-cache", "-atime")).exists() for p in programs)
    assert (folder / ".lockfile").exists()
    # the second process loaded what the first compiled: no new program
    assert len(programs) == len({p.split("-")[0] for p in programs})

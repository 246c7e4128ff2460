"""How long a run should take on this host, said before it starts.

    seconds ≈ OVERHEAD × training FLOPs / r + COMPILE × arms

r is this host's float32 rate for the MLP's first product and its kernel gradient (32×784 @
784×300, then its transpose times the result), measured as bnlab trains: on JAX a compiled loop of
them (XLA's dots are up to 1.8× slower than the host's BLAS on some hosts and as fast on others,
bench/tried.md), elsewhere NumPy; about 0.2 s. The training FLOPs are 6 × the Dense and Conv2D
multiply-adds of an example × examples × epochs × seeds × arms, and OVERHEAD is what a whole
training step costs beyond its products at that rate, from one measured run: the demo on a 2-core
AMD EPYC (Zen 3) host, bench/tried.md ("The demo's length"). An estimate, not a promise: a shared
host is slower by its load.
"""

import math
import time

OVERHEAD = 1.0
COMPILE = 5.0  # seconds a new arm spends compiling before its first step
SHAPE = (32, 784, 300)  # batch, inputs, units: the seed MLP's first product
LOOP = 50  # products in the compiled loop


def _numpy_seconds(a, b):
    start = time.perf_counter()
    a.T @ (a @ b)
    return time.perf_counter() - start


def _xla_timer(a, b):
    """A function timing LOOP steps of w ← w − ε aᵀ(a w) as one compiled XLA program, per step."""
    import jax

    def loop(a, w):
        step = lambda w, _: (w - 1e-6 * (a.T @ (a @ w)), None)  # noqa: E731
        return jax.lax.scan(step, w, None, length=LOOP)[0]

    compiled = jax.jit(loop)
    a, b = jax.device_put(a), jax.device_put(b)
    compiled(a, b).block_until_ready()

    def seconds(*_):
        start = time.perf_counter()
        compiled(a, b).block_until_ready()
        return (time.perf_counter() - start) / LOOP
    return seconds


def host_gflops(tries=8):
    """GFLOP/s of this host for the product pair above, the fastest of ``tries`` (see module)."""
    import keras
    import numpy as np

    batch, inputs, units = SHAPE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, inputs), dtype=np.float32)
    b = rng.standard_normal((inputs, units), dtype=np.float32) * 0.01
    timer = _xla_timer(a, b) if keras.backend.backend() == "jax" else _numpy_seconds
    best = min(timer(a, b) for _ in range(tries))
    return 4 * batch * inputs * units / best / 1e9


def multiply_adds(model):
    """Multiply-adds of one example's forward pass through the Dense and Conv2D layers."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        macs = math.prod(kernel.shape)
        if len(kernel.shape) == 4:  # a convolution: once per output position
            macs *= math.prod(layer.output.shape[1:3])
        total += macs
    return total


def seconds(model, examples, epochs, seeds, arms, rate=None):
    """(seconds, GFLOP/s of this host) for ``arms`` arms of ``model``'s size."""
    rate = rate or host_gflops()
    flops = 6 * multiply_adds(model) * examples * epochs * seeds * arms
    return OVERHEAD * flops / (rate * 1e9) + COMPILE * arms, rate

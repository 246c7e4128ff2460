"""How long a run should take on this host, said before it starts.

    seconds ≈ OVERHEAD × training FLOPs / r + COMPILE × arms

r is this host's float32 rate for the MLP's first product (32×784 @ 784×300, NumPy, the fastest
of a few tries: about 0.1 s), the training FLOPs are 6 × the Dense and Conv2D multiply-adds of an
example × examples × epochs × seeds × arms, and OVERHEAD is what a whole training step costs
beyond its products at that rate. OVERHEAD and COMPILE come from one measured run, the demo on a
2-core AMD EPYC host: 6 min 20 s of training at r = 56 GFLOP/s for 10,560 GFLOP
(bench/tried.md). An estimate, not a promise: a shared host is slower by its load.
"""

import math
import time

OVERHEAD = 2.0
COMPILE = 5.0  # seconds a new arm spends compiling before its first step


def host_gflops(tries=20):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 784), dtype=np.float32)
    b = rng.standard_normal((784, 300), dtype=np.float32)
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 32 * 784 * 300 / best / 1e9


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

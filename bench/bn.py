"""BN alone: forward + backward of one BN layer, and the memory-copy bandwidth to compare it with.

    python bench/bn.py --copy [--reps N]      # numpy copy bandwidth: main memory and in cache
    python bench/bn.py --layers [--reps N]    # (KERAS_BACKEND=jax|tensorflow|torch) the layers

Layers: ``bnlab.layers.BatchNorm`` (both gradients) and ``keras.layers.BatchNormalization``
(training=True: batch statistics, moving statistics updated), on the process's backend, for x of
shape (256, 784) (dense; 784 channels) and (64, 28, 28, 16) (NHWC; 16 channels). On torch also
``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (on the NCHW tensor (64, 16, 28, 28)) as a reference.
One call = forward (y) + backward (dx, dγ, dβ, given an upstream gradient dy):
  JAX         ``jax.jit`` of ``jax.vjp`` over ``layer.stateless_call``: returns y, dx, dγ, dβ
              and the new moving statistics; timed to ``block_until_ready``.
  TensorFlow  ``tf.function`` with a ``GradientTape`` (output_gradients=dy); returns y and grads.
  torch       eager: ``y = layer(x, training=True); y.backward(dy)`` (grads cleared each call).
Time: median of ``--reps`` calls after 5 untimed ones. Bytes: the minimal traffic, 5 × N × 4
(forward reads x and writes y; backward reads x and dy and writes dx) + 32 × C (γ, β, moving
mean and variance read, moving statistics written, dγ and dβ written), N = number of values.

Copy bandwidth (numpy ``copyto`` of float32, counted as read + write = 2 × size), on one thread
and split over all cores (the BN kernels may use all cores: that is the reference): main memory
with a 256 MB array (large copies use non-temporal stores, so 2 × size is the traffic); in cache
with an array the size of each BN tensor, copied over and over: what a memory-bound kernel of
that size can reach.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import emit, log, time_calls

SHAPES = ((256, 784), (64, 28, 28, 16))


def bytes_moved(shape):
    n, c = int(np.prod(shape)), shape[-1]
    return 5 * n * 4 + 32 * c


def copy_rate(nbytes, threads, samples):
    """GB/s of numpy copies of ``nbytes`` (counted as read + write), split over ``threads``
    threads (numpy releases the GIL while copying); each timed sample repeats the copy enough
    times to last about a millisecond, so thread start-up does not count."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in
    parts = list(zip(np.array_split(dst, threads), np.array_split(src, threads)))
    repeat = max(1, (64 * 2**20) // nbytes)

    def work(part):
        for _ in range(repeat):
            np.copyto(*part)

    with ThreadPoolExecutor(threads) as pool:
        def sample():
            list(pool.map(work, parts))

        seconds = time_calls(sample, samples, warmup=2)
    return 2 * nbytes * repeat / seconds / 1e9


def copy_bandwidth(reps):
    """Main memory (256 MB) and in cache (each BN tensor's size), one thread and all cores."""
    cores = os.cpu_count()
    out = {"cores": cores}
    for key, nbytes in [("main_memory", 256 * 2**20)] + [
            ("x".join(map(str, shape)), int(np.prod(shape)) * 4) for shape in SHAPES]:
        samples = 5 if key == "main_memory" else max(5, reps // 10)
        out[key] = {"bytes": nbytes, "gbps_1": copy_rate(nbytes, 1, samples),
                    "gbps": copy_rate(nbytes, cores, samples)}
        log(f"copy {key} ({nbytes / 2**20:.1f} MB): {out[key]['gbps_1']:.1f} GB/s on one "
            f"thread, {out[key]['gbps']:.1f} GB/s on {cores}")
    return out


def _inputs(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    return x, rng.standard_normal(shape).astype(np.float32)


def step_jax(layer, x, dy):
    import jax

    tv = [v.value for v in layer.trainable_variables]
    ntv = [v.value for v in layer.non_trainable_variables]

    @jax.jit
    def fwd_bwd(tv, ntv, x, dy):
        def f(tv, x):
            return layer.stateless_call(tv, ntv, x, training=True)  # (y, new moving stats)

        y, vjp, new_ntv = jax.vjp(f, tv, x, has_aux=True)
        dtv, dx = vjp(dy)
        return y, dx, dtv, new_ntv

    x, dy = jax.numpy.asarray(x), jax.numpy.asarray(dy)
    return lambda: jax.block_until_ready(fwd_bwd(tv, ntv, x, dy))


def step_tf(layer, x, dy):
    import tensorflow as tf

    x, dy = tf.constant(x), tf.constant(dy)
    weights = [v.value for v in layer.trainable_variables]

    @tf.function
    def fwd_bwd(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return y, tape.gradient(y, [x] + weights, output_gradients=dy)

    return lambda: fwd_bwd(x, dy)


def step_torch(layer, x, dy):
    import torch

    x = torch.from_numpy(x).requires_grad_(True)
    dy = torch.from_numpy(dy)
    native = not hasattr(layer, "trainable_variables")  # torch.nn.BatchNorm*, not a Keras layer
    params = list(layer.parameters()) if native else [v.value for v in layer.trainable_variables]

    def fwd_bwd():
        x.grad = None
        for p in params:
            p.grad = None
        y = layer(x) if native else layer(x, training=True)  # a torch module is in train mode
        y.backward(dy)

    return fwd_bwd


def layers(reps):
    import bnlab  # noqa: F401
    import keras

    from bnlab.layers import BatchNorm

    backend = keras.backend.backend()
    step = {"jax": step_jax, "tensorflow": step_tf, "torch": step_torch}[backend]
    rows = []
    for shape in SHAPES:
        x, dy = _inputs(shape)
        cases = [("bnlab.layers.BatchNorm", BatchNorm()),
                 ("bnlab.layers.BatchNorm(gradient=\"closed-form\")",
                  BatchNorm(gradient="closed-form")),
                 ("keras.layers.BatchNormalization", keras.layers.BatchNormalization())]
        for _, layer in cases:
            layer.build(shape)
        if backend == "torch":
            import torch

            torch.set_num_threads(os.cpu_count())
            native = (torch.nn.BatchNorm1d(shape[-1]) if len(shape) == 2
                      else torch.nn.BatchNorm2d(shape[-1]))
            cases.append((f"torch.nn.{type(native).__name__} (NCHW)", native))
        for name, layer in cases:
            xs, dys = x, dy
            if name.startswith("torch.nn") and len(shape) == 4:
                xs, dys = (np.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in (x, dy))
            seconds = time_calls(step(layer, xs, dys), reps, warmup=5)
            gbps = bytes_moved(shape) / seconds / 1e9
            rows.append({"backend": backend, "layer": name, "shape": list(shape),
                         "seconds": seconds, "bytes": bytes_moved(shape), "gbps": gbps})
            log(f"{backend}: {name} {shape}: {seconds * 1e6:.0f} µs, {gbps:.1f} GB/s")
    return rows


def main(argv):
    reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 200
    if "--copy" in argv:
        emit({"copy": copy_bandwidth(reps)})
    elif "--layers" in argv:
        emit({"rows": layers(reps)})
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

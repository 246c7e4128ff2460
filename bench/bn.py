"""BN alone: forward + backward of one BN layer in training mode, against NumPy's copy rate.

    python bench/bn.py --copy      # the copy rates: main memory and in cache, one thread and all
    python bench/bn.py --layers    # the layers, on KERAS_BACKEND=jax|tensorflow|torch

bnlab's BatchNorm (both gradients; on JAX, also its training call by the C++ kernels of
``layers.native_bn``, NATIVE), Keras's and torch's own (NCHW) at SHAPES: the median of REPS
calls of forward + backward; the bytes, N values and C channels: 5 × N × 4 (x read, y written; x,
dy read, dx written) + 32 × C (the per-channel vectors). The copies: 256 MB (main memory) and each
BN tensor's size (in cache: what a memory-bound kernel of that size can reach). On JAX, XLA's
floor: one jitted call that moves the same bytes with no reduction (y = a·x + b, dx = a·dy + c·x),
the fastest any BN written in XLA can be, so a BN near it is at the wall of XLA's own code.

On JAX each call runs on the calling thread (``jax_cpu_enable_async_dispatch`` off): by default
JAX hands a program to a pool thread and the caller sleeps until it is done, which on a small VM
costs about 80 µs a call in wake-ups (bench/tried.md, 7 Dec) — a cost of calling a program from
Python, paid once by a training step, not by each BN in it.
"""

import os
import sys

import numpy as np

from common import copy_gbps, emit, log, median, timings

SHAPES = ((256, 784), (64, 28, 28, 16))
FLOOR = "XLA's floor: the same bytes, elementwise"
NATIVE = "bnlab.layers.BatchNorm by its C++ kernels (native_bn)"
REPS = 200


def copy_rates():
    """GB/s of the copies: main memory and each BN tensor's size, one thread and all cores."""
    cores = os.cpu_count()
    out = {"cores": cores}
    for key, nbytes in [("main_memory", 256 * 2**20)] + [
            ("x".join(map(str, shape)), int(np.prod(shape)) * 4) for shape in SHAPES]:
        samples = 5 if key == "main_memory" else REPS // 10
        out[key] = {"bytes": nbytes, "gbps_1": copy_gbps(nbytes, samples, 1, median),
                    "gbps": copy_gbps(nbytes, samples, cores, median)}
        log(f"copy {key}: {out[key]['gbps_1']:.1f} GB/s, {out[key]['gbps']:.1f} on {cores} cores")
    return out


def xla_floor(x, dy):
    """XLA's pass over BN's bytes: reads x and dy, writes y and dx (the module docstring)."""
    import jax
    channels = x.shape[-1]
    a, b, c = (jax.numpy.full((channels,), v, np.float32) for v in (1.5, 0.5, 0.25))
    x, dy = jax.numpy.asarray(x), jax.numpy.asarray(dy)
    both = jax.jit(lambda x, dy, a, b, c: (a * x + b, a * dy + c * x))
    return lambda: jax.block_until_ready(both(x, dy, a, b, c))


def native_call(layer):
    """``layer.stateless_call`` in training mode, by ``layers.native_bn.train_call``."""
    import keras
    from bnlab.layers import native_bn

    def call(tv, ntv, x, training=True):
        mapping = [*zip(layer.trainable_variables, tv), *zip(layer.non_trainable_variables, ntv)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            y = native_bn.train_call(layer, x)
            return y, [scope.get_current_value(v) for v in layer.non_trainable_variables]
    return call


def step_jax(layer, x, dy, call=None):
    import jax
    call = call or layer.stateless_call
    tv = [v.value for v in layer.trainable_variables]
    ntv = [v.value for v in layer.non_trainable_variables]
    x, dy = jax.numpy.asarray(x), jax.numpy.asarray(dy)

    @jax.jit
    def fwd_bwd(tv, ntv, x, dy):  # stateless_call: (y, the new moving statistics)
        y, vjp, new_ntv = jax.vjp(lambda tv, x: call(tv, ntv, x, training=True),
                                  tv, x, has_aux=True)
        dtv, dx = vjp(dy)
        return y, dx, dtv, new_ntv
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
    x, dy = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)
    native = not hasattr(layer, "trainable_variables")  # torch.nn.BatchNorm*, not a Keras layer
    params = list(layer.parameters()) if native else [v.value for v in layer.trainable_variables]

    def fwd_bwd():
        for t in [x, *params]:
            t.grad = None
        y = layer(x) if native else layer(x, training=True)  # a torch module is in train mode
        y.backward(dy)
    return fwd_bwd


def layers():
    import bnlab  # noqa: F401  (first: where KERAS_BACKEND is unset, it picks Keras's backend)
    import keras
    from bnlab.layers import BatchNorm
    backend = keras.backend.backend()
    if backend == "jax":  # before the first array: JAX reads it when it starts its CPU client
        import jax
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    step = {"jax": step_jax, "tensorflow": step_tf, "torch": step_torch}[backend]
    rows = []
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        cases = [("bnlab.layers.BatchNorm", BatchNorm()),
                 ("bnlab.layers.BatchNorm(gradient=\"closed-form\")",
                  BatchNorm(gradient="closed-form")),
                 ("keras.layers.BatchNormalization", keras.layers.BatchNormalization())]
        for _, layer in cases:
            layer.build(shape)
        if backend == "torch":
            import torch
            torch.set_num_threads(os.cpu_count())
            native = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(shape[-1])
            cases.append((f"torch.nn.{type(native).__name__} (NCHW)", native))
        if backend == "jax":
            from bnlab.layers import native
            if native.applies(x):
                cases.append((NATIVE, cases[0][1]))
            cases.append((FLOOR, None))
        for name, layer in cases:
            xs, dys = x, dy
            if name.startswith("torch.nn") and len(shape) == 4:
                xs, dys = (np.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in (x, dy))
            call = (xla_floor(xs, dys) if layer is None
                    else step(layer, xs, dys, native_call(layer)) if name == NATIVE
                    else step(layer, xs, dys))
            seconds = median(timings(call, REPS, warmup=5))
            nbytes = 5 * 4 * int(np.prod(shape)) + 32 * shape[-1]  # the module docstring says why
            rows.append({"backend": backend, "layer": name, "shape": list(shape),
                         "seconds": seconds, "bytes": nbytes, "gbps": nbytes / seconds / 1e9})
            log(f"{backend}: {name} {shape}: {seconds * 1e6:.0f} µs, {rows[-1]['gbps']:.1f} GB/s")
    return rows


def main(argv):
    if argv not in (["--copy"], ["--layers"]):
        sys.exit(__doc__)  # the usage, exit status 1
    emit({"copy": copy_rates()} if argv == ["--copy"] else {"rows": layers()})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

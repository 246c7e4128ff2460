"""Where one bn-placement training step goes (JAX): each part against its bound on this host.

    python bench/breakdown.py --seeds 1|3 [--steps 100] [--quick]    (JSON on the last line)

The step of the BN-after MLP (784 → BN → 300 relu → BN → 100 relu → BN → 10 softmax, batch 32,
SGD), and of the no-BN baseline, split into its parts. Each part is a jitted ``lax.scan`` of
``--steps`` iterations at the step's shapes (``--seeds K``: vmapped over K seeds, as
``bnlab.lab.multiseed`` trains them), so no Python runs between iterations; the scan's carry
feeds every input (``a + 0·s``, s from the outputs) so that XLA cannot hoist the work out of
the loop, and the same scan with an empty body is subtracted. Parts:

  products      the step's matrix products: 3 forward, 3 kernel gradients, 2 input gradients
                (and, with the input BN, the first layer's input gradient, 32×300 @ 300×784,
                which only BN's γ and β need)
  BN forward    the arm's layer (``keras.layers.BatchNormalization``; and bnlab's BatchNorm) on
  BN backward   (32, 784), (32, 300), (32, 100): ``stateless_call``, then its vjp minus the forward
  activations   relu (BN arm) or LeakyReLU (baseline), forward and backward
  loss          softmax cross-entropy on (32, 10), forward and backward
  optimizer     the SGD update of every weight
  gather        the 32 images of a step taken from the 55,000 on the device
  evaluation    the epoch's validation (5,000 images, inference, batches of 500), per step
                (÷ the 1,719 steps of an epoch)

Bounds, measured in this process: products at NumPy's BLAS (the host's BLAS) for the same
shapes; every other part's minimal bytes (each array read or written once) at NumPy's copy rate
for an array in cache. The whole step is bnlab's own (``multiseed.SeedGroup``, the Keras model),
for the baseline and the BN-after arm, XLA's options as ``bnlab run`` sets them.
"""

import argparse
import sys

import numpy as np

from common import emit, fastest, host_rates, log

BATCH, SIZES, LR, EPOCH_STEPS, VAL = 32, (784, 300, 100, 10), 1e-3, 1719, 5000


def scan_seconds(fn, args, steps, k):
    """Seconds per iteration of ``fn(*args)`` in a scan (vmapped over K seeds), the empty scan's
    time subtracted. The carry holds the inputs and the whole outputs (so XLA computes all of
    them), and each iteration's inputs depend on the last outputs (so nothing is hoisted)."""
    import jax
    import jax.numpy as jnp

    def program(body):
        one = jax.vmap(body) if k > 1 else body

        def loop(args):
            def step(carry, _):
                inputs, outputs = carry
                s = sum(jnp.ravel(o)[0] for o in jax.tree.leaves(outputs)).astype(jnp.float32)
                inputs = tuple(a + (0 * s).astype(a.dtype) for a in inputs)
                return (inputs, one(*inputs)), None
            zeros = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), jax.eval_shape(one, *args))
            return jax.lax.scan(step, (args, zeros), None, length=steps)[0]
        compiled = jax.jit(loop)
        return lambda: jax.block_until_ready(compiled(args))

    full, empty = program(fn), program(lambda *a: a[0])
    return max(0.0, fastest([full, empty], 3 if steps < 50 else 5) @ [1, -1] / steps)


def numpy_seconds(shapes, reps):
    """Seconds of NumPy's (the host BLAS's) products of ``shapes`` [(m, k, n)], one after another."""
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((m, k), dtype=np.float32),
              rng.standard_normal((k, n), dtype=np.float32)) for m, k, n in shapes]
    return fastest([lambda: [a @ b for a, b in pairs]], reps)[0]


def product_shapes(bn):
    """(m, k, n) of the step's products: forward, kernel gradients, input gradients."""
    d = SIZES
    forward = [(BATCH, d[i], d[i + 1]) for i in range(3)]
    kernel = [(d[i], BATCH, d[i + 1]) for i in range(3)]
    inputs = [(BATCH, d[i + 1], d[i]) for i in range(0 if bn else 1, 3)]
    return forward + kernel + inputs


def arrays(shapes, k, seed=0):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    lead = (k,) if k > 1 else ()
    return tuple(jnp.asarray(rng.standard_normal(lead + s, dtype=np.float32)) for s in shapes)


def bn_parts(layer_class, k, steps):
    """(forward, backward) seconds of the three BN layers of the arm, all shapes together."""
    import jax

    layers = []
    for c in SIZES[:3]:
        layer = layer_class()
        layer.build((BATCH, c))
        layers.append(layer)
    weights = [([v.value for v in L.trainable_variables], [v.value for v in L.non_trainable_variables])
               for L in layers]

    def forward(*xs):
        return [L.stateless_call(tv, ntv, x, training=True)[0]
                for L, (tv, ntv), x in zip(layers, weights, xs)]

    def both(*xs_dys):
        xs, dys = xs_dys[:3], xs_dys[3:]
        out = []
        for L, (tv, ntv), x, dy in zip(layers, weights, xs, dys):
            y, vjp = jax.vjp(lambda tv, x: L.stateless_call(tv, ntv, x, training=True)[0], tv, x)
            out.append((y, vjp(dy)))
        return out

    shapes = [(BATCH, c) for c in SIZES[:3]]
    fwd = scan_seconds(forward, arrays(shapes, k), steps, k)
    total = scan_seconds(both, arrays(shapes * 2, k), steps, k)
    return fwd, max(0.0, total - fwd)


def elementwise_parts(k, steps, bn):
    """Seconds of the activations, the loss, the optimizer and the gather."""
    import jax
    import jax.numpy as jnp

    act = jax.nn.relu if bn else (lambda h: jax.nn.leaky_relu(h, 0.3))

    def activations(h1, h2, d1, d2):
        return [jax.vjp(act, h)[1](d) + (act(h),) for h, d in ((h1, d1), (h2, d2))]

    def loss(logits, labels):
        def ce(z):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None] % 10, 1))
        return jax.value_and_grad(ce)(logits)

    def optimizer(*wg):
        half = len(wg) // 2
        return [w - LR * g for w, g in zip(wg[:half], wg[half:])]

    weight_shapes = [(SIZES[i], SIZES[i + 1]) for i in range(3)] + [(s,) for s in SIZES[1:]]
    weight_shapes += [(c,) for c in SIZES[:3] for _ in range(2)] if bn else []
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.random((55_000, 784), dtype=np.float32))

    def gather(idx):
        return images[idx % 55_000]

    idx = jnp.asarray(np.arange(BATCH * k).reshape((k, BATCH) if k > 1 else (BATCH,)), jnp.int32)
    labels = jnp.asarray(np.zeros((k, BATCH) if k > 1 else (BATCH,), np.int32))
    return {
        "activations": scan_seconds(activations, arrays([(BATCH, 300), (BATCH, 100)] * 2, k),
                                    steps, k),
        "loss": scan_seconds(loss, arrays([(BATCH, 10)], k) + (labels,), steps, k),
        "optimizer": scan_seconds(optimizer, arrays(weight_shapes * 2, k), steps, k),
        "gather": scan_seconds(gather, (idx,), steps, k),
    }, weight_shapes


def whole_steps(k, steps, quick):
    """bnlab's own step (ms) for the baseline and the BN-after arm, and the evaluation per step."""
    import jax
    import jax.numpy as jnp

    from bnlab.lab import experiments, multiseed
    from common import training_block

    exp = experiments.get("bn-placement")
    out = {}
    for arm in ("baseline", "bn-after"):
        configs = [experiments.trial_config(exp, exp.arm(arm), s, dataset="fashion_mnist",
                                            epochs=1) for s in range(1, k + 1)]
        x, y = training_block(configs[0], steps)
        group = multiseed.SeedGroup(configs)
        xd, yd = jnp.asarray(x, "float32"), jnp.asarray(y)
        idx = np.stack([np.arange(steps * BATCH).reshape(steps, BATCH)] * k)

        def block():
            group.train_steps(xd, yd, idx)
            jax.block_until_ready(group.state)
        out[arm] = fastest([block], 3 if quick else 5)[0] / steps
        val = (x[:1000], y[:1000]) if quick else (np.tile(x, (VAL // len(x) + 1, 1, 1))[:VAL],
                                                  np.tile(y, VAL // len(y) + 1)[:VAL])
        out[arm + " evaluation"] = fastest([lambda: group.evaluate(*val)], 3)[0] / EPOCH_STEPS
    return out


def measure(k, steps, quick):
    import keras

    from bnlab.layers import BatchNorm

    rates = host_rates()
    copy = rates["copy_gbps_cache"] * 1e9
    rows = []

    def row(part, seconds, bound, how, **extra):
        rows.append({"part": part, "ms": 1e3 * seconds, "bound_ms": 1e3 * bound, "bound": how,
                     **extra})
        log(f"{k} seed(s): {part}: {1e3 * seconds:.3f} ms, bound {1e3 * bound:.3f} ms")

    reps = 20 if quick else 200
    for bn in (False, True):
        shapes = product_shapes(bn)

        def products(*ops, shapes=shapes):
            import jax.numpy as jnp
            return [jnp.matmul(ops[2 * i], ops[2 * i + 1]) for i in range(len(shapes))]

        operands = [s for m, kk, n in shapes for s in ((m, kk), (kk, n))]
        blas = k * numpy_seconds(shapes, reps)
        flops = 2 * sum(m * kk * n for m, kk, n in shapes)
        row(f"products ({'BN arm' if bn else 'baseline'}, {len(shapes)})",
            scan_seconds(products, arrays(operands, k), steps, k), blas,
            f"{k * flops / 1e6:.1f} MFLOP at NumPy's BLAS ({k * flops / blas / 1e9:.0f} GFLOP/s)",
            mflop=k * flops / 1e6)
        parts, weights = elementwise_parts(k, steps, bn)
        arm = "BN arm" if bn else "baseline"
        elements = {"activations": 5 * BATCH * 400, "loss": 3 * BATCH * 10,
                    "optimizer": 3 * sum(int(np.prod(s)) for s in weights),
                    "gather": 2 * BATCH * 784}
        for part, seconds in parts.items():
            nbytes = 4 * k * elements[part]
            row(f"{part} ({arm})", seconds, nbytes / copy, f"{nbytes / 1e3:.0f} kB at the copy rate")
    nbytes = 4 * k * BATCH * sum(SIZES[:3])
    for name, cls in (("keras.layers.BatchNormalization", keras.layers.BatchNormalization),
                      ("bnlab.layers.BatchNorm", BatchNorm)):
        fwd, bwd = bn_parts(cls, k, steps)
        row(f"BN forward, 3 layers ({name})", fwd, 2 * nbytes / copy,
            f"{2 * nbytes / 1e3:.0f} kB at the copy rate")
        row(f"BN backward, 3 layers ({name})", bwd, 3 * nbytes / copy,
            f"{3 * nbytes / 1e3:.0f} kB at the copy rate")
    whole = whole_steps(k, steps, quick)
    for name, seconds in whole.items():
        row(f"bnlab's {name}" + ("" if "evaluation" in name else " step"), seconds, 0.0, "")
    return {"seeds": k, "steps": steps, "rates": rates, "rows": rows}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, choices=(1, 3), default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20 steps: checks that it runs")
    args = parser.parse_args(argv)
    import bnlab  # noqa: F401
    from bnlab.lab import runtime

    runtime.configure_xla(vectorized=args.seeds > 1)  # as `bnlab run` sets it for these trials
    emit(measure(args.seeds, 20 if args.quick else args.steps, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

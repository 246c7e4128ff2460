"""Where one bn-placement training step goes (JAX): each part against its bound on this host.

The steps of the BN-after MLP (784 → BN → 300 relu → BN → 100 relu → BN → 10, batch 32, SGD) and
the no-BN baseline, in parts (``scan_seconds``): the products (with the input BN, the first
layer's input gradient too, which only BN's γ and β need), the three BN layers (Keras's, bnlab's),
activations, loss, SGD update, gather; bnlab's whole step and the validation per step. Bounds: the
products at NumPy's BLAS, every other part its minimal bytes at NumPy's in-cache copy rate. The
products goal's bound, the baseline's products at NumPy's BLAS, is timed again between the
baseline's whole steps (``BESIDE``): timed only at the start, it once read 79 GFLOP/s in a process
whose host ran at 135 twenty minutes before, and the goal moved with it.

Beside the parts, bnlab's own step as it runs (``thunk_profile``): one block of its scan under
``jax.profiler``, each of XLA's thunks timed and sorted by what it computes (the compiled HLO:
products, BN's C++ kernels, the input BN's ``row_dots``, copies, the other loops), so that what the
BN arm adds to the step is read off the program itself, not inferred from parts timed alone.
"""

import argparse
import re
import sys

import bnlab  # noqa: F401  (first: where KERAS_BACKEND is unset, it picks Keras's backend)
import jax
import jax.numpy as jnp
import keras
import numpy as np

from bnlab.lab import experiments, runtime
from bnlab.layers import BatchNorm
from common import (BESIDE, emit, fastest, host_rates, interleaved, log, thunk_micros,
                    timings, training_block)
from steps import scan_block

BATCH, SIZES, LR, EPOCH_STEPS, VAL = 32, (784, 300, 100, 10), 1e-3, 1719, 5000
STEPS = 100  # iterations of a scan; --quick: 20


def scan_seconds(fn, args, steps, k):
    """Seconds per iteration of ``fn(*args)`` in a scan (vmapped over K seeds) less the empty
    scan's; its outputs, carried and fed back into its inputs, are all computed, none hoisted."""
    args = tuple(jnp.asarray(a) for a in args)

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


def arrays(shapes, k=1):
    """Random float32 arrays of ``shapes``, each with a leading seed axis of K > 1."""
    rng = np.random.default_rng(0)
    lead = (k,) if k > 1 else ()
    return tuple(rng.standard_normal(lead + s, dtype=np.float32) for s in shapes)


def bn_parts(layer_class, k, steps):
    """(forward, backward) seconds of the three BN layers of the arm, all shapes together."""
    layers = [layer_class() for _ in SIZES[:3]]
    for layer, c in zip(layers, SIZES[:3]):
        layer.build((BATCH, c))
    weights = [([v.value for v in L.trainable_variables],
                [v.value for v in L.non_trainable_variables]) for L in layers]

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
    """{part: (seconds, float32 values it must read and write)} of the elementwise parts."""
    act = jax.nn.relu if bn else (lambda h: jax.nn.leaky_relu(h, 0.3))
    weights = [(SIZES[i], SIZES[i + 1]) for i in range(3)] + [(s,) for s in SIZES[1:]]
    weights += [(c,) for c in SIZES[:3] for _ in range(2)] if bn else []  # γ and β
    images = jnp.asarray(np.random.default_rng(1).random((55_000, 784), dtype=np.float32))
    lead = (k,) if k > 1 else ()

    def activations(h1, h2, d1, d2):
        return [jax.vjp(act, h)[1](d) + (act(h),) for h, d in ((h1, d1), (h2, d2))]

    def loss(logits, labels):
        def ce(z):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None] % 10, 1))
        return jax.value_and_grad(ce)(logits)

    def optimizer(*wg):
        half = len(wg) // 2
        return [w - LR * g for w, g in zip(wg[:half], wg[half:])]
    parts = {  # part: (function, operands, values moved)
        "activations": (activations, arrays([(BATCH, 300), (BATCH, 100)] * 2, k), 5 * BATCH * 400),
        "loss": (loss, arrays([(BATCH, 10)], k) + (np.zeros(lead + (BATCH,), np.int32),),
                 3 * BATCH * 10),
        "optimizer": (optimizer, arrays(weights * 2, k), 3 * sum(int(np.prod(s)) for s in weights)),
        "gather": (lambda idx: images[idx % 55_000],
                   (np.arange(BATCH * k, dtype=np.int32).reshape(lead + (BATCH,)),),
                   2 * BATCH * 784)}
    return {part: (scan_seconds(fn, operands, steps, k), values)
            for part, (fn, operands, values) in parts.items()}


def arm_block(arm, k, steps):
    """(x, y, seed group, block) of bnlab's scan over ``steps`` batches, K seeds of ``arm``."""
    exp = experiments.get("bn-placement")
    configs = [experiments.trial_config(exp, exp.arm(arm), s, dataset="fashion_mnist", epochs=1)
               for s in range(1, k + 1)]
    x, y = training_block(configs[0], steps)
    return (x, y) + scan_block(configs, x, y)


def whole_steps(built, steps, quick, bound=None):
    """bnlab's own step (s) for each arm of ``built`` ({arm: ``arm_block``}), and the
    evaluation per step; with ``bound`` ((arm, fn)), also the fastest call of fn timed between
    that arm's blocks ("<arm> bound"), so that a step and its bound see the same host."""
    out = {}
    for arm, (x, y, group, block) in built.items():
        if bound and bound[0] == arm:
            block()
            blocks, calls = [], []
            for _ in range(3 if quick else 5):
                blocks += timings(block, 1, warmup=0)
                calls.append(min(timings(bound[1], 20, warmup=0)))
            out[arm], out[arm + " bound"] = min(blocks) / steps, min(calls)
        else:
            out[arm] = fastest([block], 3 if quick else 5)[0] / steps
        val = (x[:1000], y[:1000]) if quick else (np.tile(x, (VAL // len(x) + 1, 1, 1))[:VAL],
                                                  np.tile(y, VAL // len(y) + 1)[:VAL])
        out[arm + " evaluation"] = fastest([lambda: group.evaluate(*val)], 3)[0] / EPOCH_STEPS
    return out


KINDS = {"bnlab_bn_forward": "BN forward (C++ kernels)",
         "bnlab_bn_backward": "BN backward (C++ kernels)",
         "bnlab_row_dots": "the input BN's γ, β gradient (row_dots)"}
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.-]+) = .*? ([a-z-]+)\(")


def thunk_kinds(hlo):
    """{instruction: kind} of a compiled module's text: products (a dot, or a fusion calling
    one), the kernels of ``KINDS``, copies, and every other loop or reduction."""
    computations, current = {}, None
    for line in hlo.splitlines():
        if line.endswith("{") and not line.startswith(" "):
            current = computations.setdefault(line.split()[0].lstrip("%"), [])
        elif current is not None:
            current.append(line)
    kinds = {}
    for lines in computations.values():
        for line in lines:
            if not (match := INSTRUCTION.match(line)):
                continue
            name, op = match.groups()
            called = re.search(r"calls=%?([\w.-]+)", line)
            target = re.search(r'custom_call_target="(\w+)"', line)
            body = computations.get(called[1], []) if called else []
            if op == "dot" or (op == "fusion" and any(" dot(" in ln or " convolution(" in ln
                                                      for ln in body)):
                kinds[name] = "products"
            elif op == "custom-call" and target:
                kinds[name] = KINDS.get(target[1], f"custom call {target[1]}")
            elif op == "copy":
                kinds[name] = "copies"
            elif op == "fusion":
                kinds[name] = "other loops and reductions"
    return kinds


def thunk_profile(built, k, steps, rounds=3):
    """µs per step of each kind of thunk (``thunk_kinds``) in bnlab's own scan, for each arm of
    ``built`` (``whole_steps``): the median over ``rounds`` of one block under ``jax.profiler``,
    the arms in ABBA order (the host drifts by a third between blocks). XLA may run independent
    thunks at once on its two threads, so a step's kinds may add up to more than its time."""
    blocks, kinds = [], []
    for x, y, group, _ in built.values():
        args = (jnp.asarray(x), jnp.asarray(y),
                np.stack([np.arange(steps * BATCH).reshape(steps, BATCH)] * k, 1))
        compiled = group._train_steps.lower(group.state, *args).compile()  # its HLO is the one run

        def block(group=group, compiled=compiled, args=args):
            group.state = compiled(group.state, *args)[0]
            jax.block_until_ready(group.state)
        blocks.append(block)
        kinds.append(thunk_kinds(compiled.as_text()))
    profiles = interleaved(blocks, rounds, measure=lambda block: thunk_micros(block, steps))
    out = {}
    for arm, kind_of, rounds_ in zip(built, kinds, profiles):
        totals = []  # one {kind: µs a step} a round
        for micros in rounds_:
            total = dict.fromkeys(kind_of.values(), 0.0)
            for name, us in micros.items():
                if name in kind_of:
                    total[kind_of[name]] += us
            totals.append(total)
        out[arm] = {kind: float(np.median([t[kind] for t in totals])) for kind in totals[0]}
        log(f"{k} seed(s): {arm}: " + ", ".join(f"{n} {v:.0f} µs" for n, v in out[arm].items()))
    return out


def measure(k, steps, quick):
    rates = host_rates()
    copy = rates["copy_gbps_cache"] * 1e9
    rows = []

    def row(part, seconds, bound, **extra):
        rows.append({"part": part, "ms": 1e3 * seconds, "bound_ms": 1e3 * bound, **extra})
        log(f"{k} seed(s): {part}: {1e3 * seconds:.3f} ms, bound {1e3 * bound:.3f} ms")

    def products(*operands):  # NumPy's BLAS on NumPy arrays, XLA's dots under jit
        return [a @ b for a, b in zip(operands[::2], operands[1::2])]
    d = SIZES
    for bn in (False, True):
        arm = "BN arm" if bn else "baseline"
        shapes = ([(BATCH, d[i], d[i + 1]) for i in range(3)]  # (m, k, n): the forward products,
                  + [(d[i], BATCH, d[i + 1]) for i in range(3)]  # the kernel gradients,
                  + [(BATCH, d[i + 1], d[i]) for i in range(0 if bn else 1, 3)])  # input gradients
        operands = [s for m, kk, n in shapes for s in ((m, kk), (kk, n))]
        host = arrays(operands)
        blas = k * fastest([lambda: products(*host)], 20 if quick else 200)[0]
        if not bn:  # timed again between the baseline's whole steps (whole_steps)
            baseline_products = (lambda host=host: products(*host))
        mflop = 2 * k * sum(m * kk * n for m, kk, n in shapes) / 1e6
        row(f"products ({arm}, {len(shapes)})",
            scan_seconds(products, arrays(operands, k), steps, k), blas, mflop=mflop)
        for part, (seconds, values) in elementwise_parts(k, steps, bn).items():
            row(f"{part} ({arm})", seconds, 4 * k * values / copy)
    nbytes = 4 * k * BATCH * sum(SIZES[:3])
    for name, cls in (("keras.layers.BatchNormalization", keras.layers.BatchNormalization),
                      ("bnlab.layers.BatchNorm", BatchNorm)):
        fwd, bwd = bn_parts(cls, k, steps)
        row(f"BN forward, 3 layers ({name})", fwd, 2 * nbytes / copy)
        row(f"BN backward, 3 layers ({name})", bwd, 3 * nbytes / copy)
    built = {arm: arm_block(arm, k, steps) for arm in ("baseline", "bn-after")}
    steps_and_bound = whole_steps(built, steps, quick, ("baseline", baseline_products))
    for name, seconds in steps_and_bound.items():
        if name == "baseline bound":
            row(BESIDE, k * seconds, 0.0)
        else:
            row(f"bnlab's {name}" + ("" if "evaluation" in name else " step"), seconds, 0.0)
    return {"seeds": k, "steps": steps, "rates": rates, "rows": rows,
            "thunks": thunk_profile(built, k, steps)}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, choices=(1, 3), default=1)
    parser.add_argument("--quick", action="store_true", help="20 steps: checks that it runs")
    args = parser.parse_args(argv)
    runtime.configure_xla(vectorized=args.seeds > 1)  # as `bnlab run` sets it for these trials
    emit(measure(args.seeds, 20 if args.quick else STEPS, args.quick))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What the input BN costs the bn-after MLP's step, and how much a different gradient recovers.

Pure JAX, one seed, batch 32, STEPS SGD steps in a jitted ``lax.scan`` on random data, the variants
alternated in one process: ``plain`` (autodiff), ``folded`` (x̂ @ (γ ⊙ W) + β @ W), ``custom``
(``bn_dense``), ``no-input-bn``, ``no-bn``; bench/tried.md has the results. Run with the flags
``configure_xla`` picks for a dense seed: ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from common import timings

EPS, STEPS, ROUNDS = 1e-3, 200, 12


def normalized(x):
    mean = x.mean(0)
    return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(0) + EPS)


@jax.custom_vjp
def bn_dense(x_hat, gamma, beta, w):
    """(γ ⊙ x̂ + β) @ W, x̂ data. Autodiff reaches γ and β through ∂L/∂y = g Wᵀ, a product the
    no-BN model never computes; with P = x̂ᵀ g: ∂W = γ ⊙ P + β ⊗ Σₙg, ∂γ = Σⱼ W ⊙ P, ∂β = W Σₙg."""
    return (gamma * x_hat + beta) @ w


def _bwd(saved, g):
    x_hat, gamma, beta, w = saved
    p, g_sum = x_hat.T @ g, g.sum(0)
    return (jnp.zeros_like(x_hat), (w * p).sum(1), w @ g_sum,
            gamma[:, None] * p + beta[:, None] * g_sum[None, :])


bn_dense.defvjp(lambda *args: (bn_dense(*args), args), _bwd)  # saves its inputs


def logits(p, x, variant):
    if variant == "no-bn":
        h = jax.nn.relu(jax.nn.relu(x @ p["w1"] + p["c1"]) @ p["w2"] + p["c2"])
        return h @ p["w3"] + p["c3"]
    x_hat = normalized(x)
    h = {"plain": lambda: (p["g0"] * x_hat + p["b0"]) @ p["w1"],
         "folded": lambda: x_hat @ (p["g0"][:, None] * p["w1"]) + p["b0"] @ p["w1"],
         "custom": lambda: bn_dense(jax.lax.stop_gradient(x_hat), p["g0"], p["b0"], p["w1"]),
         "no-input-bn": lambda: x @ p["w1"]}[variant]() + p["c1"]
    h = p["g1"] * normalized(jax.nn.relu(h)) + p["b1"]
    h = p["g2"] * normalized(jax.nn.relu(h @ p["w2"] + p["c2"])) + p["b2"]
    return h @ p["w3"] + p["c3"]


def loss(p, x, y, variant):
    """Mean cross-entropy of the labels ``y`` (B,)."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits(p, x, variant)), y[:, None], 1).mean()


def parameters(rng, trained=False):
    """The weights as float32 arrays, as initialized or (``trained``) away from it."""
    p = {}
    for k, n in {"0": 784, "1": 300, "2": 100}.items():
        p[f"g{k}"], p[f"b{k}"] = ((rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n)) if trained
                                  else (np.ones(n), np.zeros(n)))
    for k, (n, m) in {"1": (784, 300), "2": (300, 100), "3": (100, 10)}.items():
        p[f"w{k}"] = rng.normal(0, 0.05, (n, m))
        p[f"c{k}"] = rng.normal(0, 0.1, m) if trained else np.zeros(m)
    return jax.tree.map(lambda a: jnp.asarray(a, "float32"), p)


def train(variant):
    def step(p, batch):
        grads = jax.grad(loss)(p, *batch, variant)
        return jax.tree.map(lambda w, g: w - 0.01 * g, p, grads), None
    return jax.jit(lambda p, xs, ys: jax.lax.scan(step, p, (xs, ys))[0])


def main():
    rng = np.random.default_rng(0)
    p = parameters(rng)
    xs = jnp.asarray(rng.uniform(0, 1, (STEPS, 32, 784)), "float32")
    ys = jnp.asarray(rng.integers(0, 10, (STEPS, 32)))
    variants = ("plain", "folded", "custom", "no-input-bn", "no-bn")
    runs = {v: train(v) for v in variants}
    after = {v: runs[v](p, xs, ys) for v in variants}  # compiled; the weights after STEPS steps
    for v in ("folded", "custom"):
        diff = max(float(jnp.abs(after[v][k] - after["plain"][k]).max()) for k in p)
        print(f"{v}: largest weight difference from plain after {STEPS} steps {diff:.1e}")
    ms = {v: [] for v in variants}
    for r in range(ROUNDS):
        for v in variants if r % 2 == 0 else variants[::-1]:
            seconds = timings(lambda: jax.block_until_ready(runs[v](p, xs, ys)), 1, warmup=0)
            ms[v].append(seconds[0] / STEPS * 1e3)
    base = np.median(ms["no-bn"])
    for v in variants:
        print(f"{v:12} {np.median(ms[v]):.3f} ms/step (min {min(ms[v]):.3f}), "
              f"÷ no-bn {np.median(ms[v]) / base:.2f}")


if __name__ == "__main__":
    main()

"""What the input BN costs the bn-after MLP's step, and how much of it a different gradient
recovers (issue 23: "BN for free"). Pure JAX, one seed, batch 32, a jitted ``lax.scan`` of
STEPS plain-SGD steps on random data; the variants' blocks alternate in one process.

The model: x → BN(784) → Dense 300 relu → BN → Dense 100 relu → BN → Dense 10 softmax. With
y = γ ⊙ x̂ + β the input BN's output and g = ∂L/∂h₁ (B × 300), autodiff gives γ and β their
gradients through ∂L/∂y = g Wᵀ, a (32 × 300) @ (300 × 784) product that the no-BN model never
computes (its input needs no gradient). Exactly the same gradients, with P = x̂ᵀ g (784 × 300):

    ∂L/∂W = γ ⊙ P + β ⊗ Σₙ g        ∂L/∂γ = Σⱼ W ⊙ P        ∂L/∂β = W Σₙ g

Variants: ``plain`` (autodiff of (γ ⊙ x̂ + β) @ W), ``folded`` (autodiff of x̂ @ (γ ⊙ W) + β @ W),
``custom`` (the formulas above as a ``jax.custom_vjp``), ``custom-dot-stats`` (its batch means as
products with a ones vector), ``custom-no-norm`` (x̂ = x: what the input's normalization
itself costs), ``no-input-bn``, ``no-bn``.
Run: ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python bench/input_bn.py`` (the flags
``configure_xla`` picks for one seed of a dense model).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

EPS, STEPS, ROUNDS = 1e-3, 200, 12


def normalized(x):
    mean = x.mean(0)
    return (x - mean) * jax.lax.rsqrt(((x - mean) ** 2).mean(0) + EPS)


def normalized_by_dots(x):
    """The batch means as products with a ones vector (XLA's dot kernel, not its reduction)."""
    ones = jnp.ones((1, x.shape[0]), x.dtype) / x.shape[0]
    mean = (ones @ x)[0]
    return (x - mean) * jax.lax.rsqrt((ones @ (x - mean) ** 2)[0] + EPS)


@jax.custom_vjp
def bn_dense(x_hat, gamma, beta, w):
    """(γ ⊙ x̂ + β) @ W, with x̂ data (no gradient)."""
    return (gamma * x_hat + beta) @ w


def _fwd(x_hat, gamma, beta, w):
    return bn_dense(x_hat, gamma, beta, w), (x_hat, gamma, beta, w)


def _bwd(saved, g):
    x_hat, gamma, beta, w = saved
    p, g_sum = x_hat.T @ g, g.sum(0)
    return (jnp.zeros_like(x_hat), (w * p).sum(1), w @ g_sum,
            gamma[:, None] * p + beta[:, None] * g_sum[None, :])


bn_dense.defvjp(_fwd, _bwd)


def logits(p, x, variant):
    if variant == "no-bn":
        h = jax.nn.relu(jax.nn.relu(x @ p["w1"] + p["c1"]) @ p["w2"] + p["c2"])
        return h @ p["w3"] + p["c3"]
    x_hat = {"custom-dot-stats": normalized_by_dots, "custom-no-norm": lambda x: x}.get(
        variant, normalized)(x)
    variant = "custom" if variant.startswith("custom") else variant
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
    """The model's weights as a dict of float32 arrays: BN's γ = 1, β = 0 and zero biases as
    initialized, or with ``trained`` those away from their initial values (a gradient test)."""
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
    variants = ("plain", "folded", "custom", "custom-dot-stats", "custom-no-norm", "no-input-bn",
                "no-bn")
    runs = {v: train(v) for v in variants}
    after = {v: runs[v](p, xs, ys) for v in variants}  # compiled; the weights after STEPS steps
    for v in ("folded", "custom", "custom-dot-stats"):
        diff = max(float(jnp.abs(after[v][k] - after["plain"][k]).max()) for k in p)
        print(f"{v}: largest weight difference from plain after {STEPS} steps {diff:.1e}")
    ms = {v: [] for v in variants}
    for r in range(ROUNDS):
        for v in variants if r % 2 == 0 else variants[::-1]:
            start = time.perf_counter()
            jax.block_until_ready(runs[v](p, xs, ys))
            ms[v].append((time.perf_counter() - start) / STEPS * 1e3)
    base = np.median(ms["no-bn"])
    for v in variants:
        print(f"{v:12} {np.median(ms[v]):.3f} ms/step (min {min(ms[v]):.3f}), "
              f"÷ no-bn {np.median(ms[v]) / base:.2f}")


if __name__ == "__main__":
    main()

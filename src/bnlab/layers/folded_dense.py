"""A BN on the network's input and the Dense after it, as one op whose gradient is cheaper.

With z = x̂ (B × D) the input's normalized values, γ, β (D) the BN's scale and shift, and W (D × U),
c (U) the Dense's kernel and bias, the pair computes

    h = (γ ⊙ z + β) W + c

Autodiff gives γ and β their gradients through ∂L/∂y = g Wᵀ (g = ∂L/∂h, B × U), a (B × U) @ (U × D)
product that a network without the input BN never computes. The same gradients follow from the
product the kernel's gradient needs anyway, P = zᵀ g (D × U), because y = γ ⊙ z + β:

    ∂L/∂W = yᵀ g = γ ⊙ P + β ⊗ Σ_b g      ∂L/∂γ = Σ_b ∂L/∂y ⊙ z = Σ_u W ⊙ P
    ∂L/∂β = Σ_b ∂L/∂y = W Σ_b g           ∂L/∂c = Σ_b g        ∂L/∂z = g (γ ⊙ W)ᵀ

``folded_dense`` is h with that gradient written by hand. ∂L/∂z is still returned (correct), but
it is the expensive product: use this op where z needs no gradient (x is data, so z is too), and
XLA drops it unused. What it saves: bench/input_bn.py, docs/performance.md. On JAX on a CPU,
∂L/∂γ and ∂L/∂β come from one C++ kernel that reads W and P once (``layers.native``); elsewhere,
and where it cannot be built, from the two expressions above.

One addition does not change a value: ∂L/∂W gets 0 · (∂L/∂γ₁ + ∂L/∂β₁), a data dependency. Without
it nothing orders the kernel's update after the reads of W that ∂L/∂γ and ∂L/∂β make, and XLA,
updating W in place inside a training loop, copies all of W first on every step (a whole sum, not
one element, would cost more: XLA merges it into one reduction over W ⊙ P). Only where ∂L/∂γ₁ or
∂L/∂β₁ is not finite does it change ∂L/∂W, to NaN.
"""

from keras import ops

from bnlab.layers import native


def folded_dense(z, gamma, beta, kernel, bias=None):
    """(γ ⊙ z + β) W + c, its gradient from P = zᵀ g as in the module docstring.

    Args:
        z: (B, D) the normalized inputs x̂ (no scale or shift applied).
        gamma, beta: (D,) the norm's scale and shift.
        kernel: (D, U) the Dense's W; bias: (U,) its c, or None for a Dense without bias.
    Returns: (B, U), before the Dense's activation.
    """
    inputs = (z, gamma, beta, kernel) + (() if bias is None else (bias,))

    @ops.custom_gradient
    def fn(z, gamma, beta, kernel, *bias):
        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            p, g_sum = ops.matmul(ops.transpose(z), g), ops.sum(g, axis=0)
            d_kernel = gamma[:, None] * p + beta[:, None] * g_sum[None, :]
            if native.applies(kernel, p, g_sum):  # one pass over W and P: layers/native.py
                d_gamma, d_beta = native.row_dots(kernel, p, g_sum)
            else:
                d_gamma, d_beta = ops.sum(kernel * p, axis=1), ops.matmul(kernel, g_sum)
            # 0 · (one element of each): the kernel's update waits for the two reads of W above,
            # so XLA updates W in place instead of copying it every step (module docstring).
            d_kernel = d_kernel + 0.0 * (d_gamma[0] + d_beta[0])
            d_z = ops.matmul(g, ops.transpose(gamma[:, None] * kernel))
            return (d_z, d_gamma, d_beta, d_kernel) + ((g_sum,) if bias else ())

        h = ops.matmul(gamma * z + beta, kernel)
        return (h + bias[0] if bias else h), grad

    return fn(*inputs)

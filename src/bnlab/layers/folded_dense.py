"""A BN on the network's input and the Dense after it, as one product whose gradient is cheaper.

With z = x̂ (B × D) the input's normalized values, γ, β (D) the BN's scale and shift, and W (D × U),
c (U) the Dense's kernel and bias, the pair computes

    h = (γ ⊙ z + β) W + c                                          (readable: BN, then Dense)
      = z (γ ⊙ W) + (β W + c)          γ ⊙ W: row d of W times γ_d  (folded: this module)

The two are equal up to float round-off. Their gradients differ in cost where z needs no gradient
(x is data, so z is too). With g = ∂L/∂h (B × U), autodiff of the readable form takes ∂L/∂y = g Wᵀ,
a (B × U) @ (U × D) product that a network without the input BN never computes, only to reduce it
to ∂γ = Σ_b ∂y ⊙ z and ∂β = Σ_b ∂y. Autodiff of the folded form reuses the product the kernel's
gradient needs anyway, P = zᵀ g (D × U):

    ∂L/∂W = γ ⊙ P + β ⊗ Σ_b g        ∂L/∂γ = Σ_u W ⊙ P        ∂L/∂β = W Σ_b g        ∂L/∂c = Σ_b g

so the BN on the input costs a few passes over D × U instead of a third matrix product
(bench/input_bn.py measures both; docs/performance.md). On z's gradient the folded form is no
cheaper: use it only where z needs none.
"""

from keras import ops


def folded_dense(z, gamma, beta, kernel, bias=None):
    """(γ ⊙ z + β) W + c computed as z (γ ⊙ W) + (β W + c).

    Args:
        z: (B, D) the normalized inputs x̂ (no scale or shift applied).
        gamma, beta: (D,) the norm's scale and shift.
        kernel: (D, U) the Dense's W; bias: (U,) its c, or None for a Dense without bias.
    Returns: (B, U), before the Dense's activation.
    """
    shift = ops.matmul(beta[None, :], kernel)[0]
    if bias is not None:
        shift = shift + bias
    return ops.matmul(z, gamma[:, None] * kernel) + shift

"""BN's training-mode normalization with its gradient in closed form: ``gradient="closed-form"``.

The readable layer lets autodiff differentiate ``statistics.moments`` and ``x · a + b``. This is
the same function, y = γ · x̂ + β with x̂ = (x − μ) / √(σ² + ε), μ and σ² from the two-pass
``statistics.moments``; only its gradient is written by hand, from x̂ and two sums instead of the
chain through the moments (w: the mask's weights, 1 without one; n = Σ w; Σ over the reduced axes,
and over the replicas where the statistics are synchronized)::

    dβ = Σ dy          dγ = Σ dy · x̂
    dx = γ / √(σ² + ε) · (dy − w / n · (Σ dy + x̂ · Σ dy · x̂))

dγ and dβ keep each replica's own sums (the optimizer adds them up, as it adds any weight's
gradient); dx uses the global ones, because μ and σ² are the global batch's. Renorm's (r, d)
corrections are not covered: ``BatchNorm`` keeps autodiff there.
"""

from keras import ops


def normalize(x, mean, variance, count, gamma, beta, epsilon, axes, weights=None,
              replica_sum=None):
    """y = γ · (x − μ) / √(σ² + ε) + β with the closed-form gradient of the module docstring.

    ``mean``, ``variance`` and ``count`` come from ``statistics.moments(x, axes, mask, ...)``
    (keepdims); ``gamma`` and ``beta`` are shaped to broadcast against x; ``weights`` is the
    mask as x's dtype (None without a mask).
    """
    mean, variance = ops.stop_gradient(mean), ops.stop_gradient(variance)
    count = ops.maximum(ops.stop_gradient(count), 1.0)
    inputs = (x, mean, variance, count, gamma, beta) + (() if weights is None else (weights,))
    # Axes that γ and β broadcast along but the statistics do not (Ghost BN's groups).
    group_axes = tuple(a for a in range(len(x.shape)) if gamma.shape[a] == 1 and a not in axes)

    @ops.custom_gradient
    def fn(x, mean, variance, count, gamma, beta, *weights):
        inverse = ops.rsqrt(variance + epsilon)
        x_hat = (x - mean) * inverse

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            sum_dy = ops.sum(dy, axis=axes, keepdims=True)
            sum_dy_xhat = ops.sum(dy * x_hat, axis=axes, keepdims=True)
            d_beta, d_gamma = sum_dy, sum_dy_xhat
            if group_axes:
                d_beta = ops.sum(d_beta, axis=group_axes, keepdims=True)
                d_gamma = ops.sum(d_gamma, axis=group_axes, keepdims=True)
            if replica_sum is not None:
                sum_dy, sum_dy_xhat = replica_sum(sum_dy), replica_sum(sum_dy_xhat)
            share = (weights[0] if weights else 1.0) / count
            dx = gamma * inverse * (dy - share * (sum_dy + x_hat * sum_dy_xhat))
            zeros = tuple(ops.zeros_like(t) for t in (mean, variance, count))
            return (dx, *zeros, d_gamma, d_beta) + tuple(ops.zeros_like(w) for w in weights)

        return x_hat * gamma + beta, grad

    return fn(*inputs)


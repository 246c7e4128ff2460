"""Ghost Batch Normalization (Hoffer et al., 2017): statistics per virtual batch of k examples.

In training, a batch of N examples is split, in order, into G = ⌈N/k⌉ virtual batches of k::

    x: (N, ...)  →  x_g: (G, k, ...)         example i goes to group ⌊i / k⌋

When k does not divide N (an epoch's last batch) the last group is smaller: x is padded with
G·k − N rows of zeros that a mask leaves out of the statistics, and the padding is cut off the
output again. Each group is normalized with its own statistics (μ_g, σ²_g from
``statistics.moments`` over the group's n_g examples and the non-channel axes). There is one set
of moving statistics; each step updates it with the average over the groups, weighted by their
share of the batch w_g = n_g / N (1/G when k divides N), of their means and biased variances::

    μ̄  = Σ_g w_g μ_g          σ̄² = Σ_g w_g σ²_g
    moving_mean     ← m · moving_mean     + (1 − m) · μ̄
    moving_variance ← m · moving_variance + (1 − m) · σ̄²

Inference is BN's (the moving statistics; no groups). With k ≥ N this is BN.

With ``renorm=True`` each group gets its own (r, d) from its μ_g, σ²_g, and the five moving
statistics are updated once per step from μ̄ and σ̄² (σ = √(σ̄² + ε)). With a mask, each group's
statistics count its own unmasked steps (a fully masked group has μ_g = σ²_g = 0).
"""

import keras
from keras import ops

from bnlab.errors import UserError


def check_size(virtual_batch_size):
    """UserError naming ``virtual_batch_size`` unless it is None or a positive int."""
    k = virtual_batch_size
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise UserError(f"virtual_batch_size must be None (no ghost batches) or a positive int; "
                        f"got virtual_batch_size={k!r}.")


def split(x, virtual_batch_size, mask=None):
    """(N, ...) → (G, k, ...), G = ⌈N/k⌉: the virtual batches along a new leading axis.

    Returns ``(x_groups, mask_groups, shares)``. When k divides N, ``shares`` is None and the
    mask is ``mask`` grouped (None stays None). Otherwise x is padded to G·k rows, the mask is
    False on the padding (and ``mask`` elsewhere), and ``shares`` (G, 1, ..) holds w_g = n_g / N.
    A batch size unknown while tracing (TensorFlow graphs with a ``None`` batch axis) is padded
    by as many rows as the step needs, possibly none.
    """
    k = virtual_batch_size
    if x.shape[0] is not None and x.shape[0] % k == 0:
        return _group(x, k), None if mask is None else _group(mask, k), None
    n = ops.shape(x)[0]
    padding = (-n) % k
    valid = ops.ones_like(x) if mask is None else ops.cast(mask, x.dtype)
    x, valid = _pad_rows(x, padding), _pad_rows(valid, padding) > 0.5
    real = ops.cast(ops.arange(n + padding) < n, x.dtype)  # (G·k,): 1 on the batch, 0 on padding
    sizes = ops.sum(ops.reshape(real, (-1, k)), axis=1)  # n_g, (G,)
    shares = ops.reshape(sizes / ops.cast(n, x.dtype), (-1,) + (1,) * len(x.shape))
    return _group(x, k), _group(valid, k), shares


def _pad_rows(t, padding):
    """``t`` with ``padding`` rows of zeros after its last along axis 0."""
    widths = [[0, padding]] + [[0, 0]] * (len(t.shape) - 1)
    if isinstance(padding, int):
        return ops.pad(t, widths)
    import tensorflow as tf  # a batch size known only when TensorFlow's graph runs

    return tf.pad(t, widths)


def _group(x, k):
    return ops.reshape(x, (-1, k) + tuple(ops.shape(x)[1:]))


def merge(x_groups, shape):
    """(G, k, ...) → (N, ...), the inverse of :func:`split` (the padding, if any, cut off)."""
    flat = ops.reshape(x_groups, (-1,) + tuple(ops.shape(x_groups)[2:]))
    return flat[: shape[0]]


def pool(statistic, shares=None):
    """The groups' average of a statistic (G, 1, .., C, ..) → (1, 1, .., C, ..), weighted by
    ``shares`` (w_g = n_g / N, from :func:`split`) when the groups differ in size."""
    if shares is None:
        return ops.mean(statistic, axis=0, keepdims=True)
    return ops.sum(statistic * shares, axis=0, keepdims=True)

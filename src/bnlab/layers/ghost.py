"""Ghost Batch Normalization (Hoffer et al., 2017): statistics per virtual batch of k examples.

In training, a batch of N = G·k examples is split, in order, into G virtual batches of k::

    x: (N, ...)  →  x_g: (G, k, ...)         example i goes to group ⌊i / k⌋

and each group is normalized with its own statistics (μ_g, σ²_g from ``statistics.moments`` over
the group's k examples and the non-channel axes). There is one set of moving statistics; each step
updates it with the average over the groups of their means and of their biased variances::

    μ̄  = (1/G) Σ_g μ_g          σ̄² = (1/G) Σ_g σ²_g
    moving_mean     ← m · moving_mean     + (1 − m) · μ̄
    moving_variance ← m · moving_variance + (1 − m) · σ̄²

Inference is BN's (the moving statistics; no groups). With k = N this is BN.

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
        raise UserError(
            f"virtual_batch_size must be None (no ghost batches) or a positive int that divides "
            f"the batch size; got virtual_batch_size={k!r}."
        )


def check_divides(x, virtual_batch_size):
    """UserError naming ``virtual_batch_size`` when it does not divide the batch size of ``x``.

    A batch size unknown while tracing (TensorFlow graphs with a ``None`` batch axis) is checked
    when the graph runs, with the same message (TensorFlow raises it as InvalidArgumentError).
    """
    batch, k = x.shape[0], virtual_batch_size
    if batch is not None:
        if batch % k:
            raise UserError(_not_a_divisor(k, batch))
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        batch = tf.shape(x)[0]
        tf.debugging.assert_equal(batch % k, 0, message=_not_a_divisor(k, "of this step"))


def _not_a_divisor(k, batch):
    return (f"virtual_batch_size={k} does not divide the batch size {batch}; allowed: a divisor "
            "of the batch size (drop or pad the last, smaller batch).")


def split(x, virtual_batch_size):
    """(N, ...) → (N/k, k, ...): the virtual batches along a new leading axis."""
    return ops.reshape(x, (-1, virtual_batch_size) + tuple(ops.shape(x)[1:]))


def merge(x_groups, shape):
    """(N/k, k, ...) → (N, ...), the inverse of :func:`split`."""
    return ops.reshape(x_groups, shape)


def pool(statistic):
    """Average of the per-group statistics (G, 1, .., C, ..) → (1, 1, .., C, ..)."""
    return ops.mean(statistic, axis=0, keepdims=True)

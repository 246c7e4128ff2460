"""The batch statistics every BN variant shares: two-pass moments with a mask, across replicas.

For an input ``x`` reduced over ``axes`` (everything but the channel axis, and, for Ghost BN, but
the group axis too), a mask ``m`` (1 for a step that counts, 0 for a masked one; ``m = 1`` when
there is no mask), and ``Σ`` a sum over ``axes`` — and over the replicas of a data-parallel step
when the statistics are synchronized::

    n   = Σ m                                 the count of steps that count           (.., C, ..)
    μ   = Σ m·x / n                           first pass                               (.., C, ..)
    σ²  = Σ m·(x − μ)² / n                    second pass, biased (divides by n)       (.., C, ..)

Every result keeps the reduced axes as size 1 (``keepdims``), so it broadcasts against ``x``.
A fully masked channel has n = 0; it gets μ = σ² = 0 (the denominator is max(n, 1)).

Across replicas, the sums (not the means) are added, so μ and σ² are those of the global batch
(the concatenation of all replicas' batches), with μ the global mean *before* the second pass.
With equal shards and no mask this is ``pmean`` of the local means, then ``pmean`` of the local
mean((x − μ_global)²) — the two-pass statistics of the global batch.
"""

from keras import ops

from bnlab.errors import UserError


def moments(x, axes, mask=None, replica_sum=None):
    """Return (μ, σ², n) of ``x`` over ``axes`` as in the module docstring, all with keepdims.

    Args:
        x: float tensor (float32 or wider).
        axes: tuple of the reduced axes.
        mask: optional bool tensor of ``x``'s shape; False steps are left out of the statistics.
        replica_sum: optional function that sums a tensor over the replicas (see
            :func:`replica_sum`); ``None`` keeps the statistics local.
    """
    if mask is None:
        weights = None
        count = 1
        for a in axes:
            count = count * ops.shape(x)[a]
        count = ops.cast(count, x.dtype)
        total = ops.sum(x, axis=axes, keepdims=True)
    else:
        weights = ops.cast(mask, x.dtype)
        count = ops.sum(weights, axis=axes, keepdims=True)
        total = ops.sum(ops.where(mask, x, 0.0), axis=axes, keepdims=True)
    if replica_sum is not None:
        total, count = replica_sum(total), replica_sum(count)
    denominator = ops.maximum(count, 1.0)
    mean = total / denominator

    deviation = x - mean
    if weights is not None:
        deviation = ops.where(mask, deviation, 0.0)
    squares = ops.sum(ops.square(deviation), axis=axes, keepdims=True)
    if replica_sum is not None:
        squares = replica_sum(squares)
    return mean, squares / denominator, count


def replica_sum(axis_name=None, axis_index_groups=None, synchronized=False):
    """The function that sums a tensor over replicas, or ``None`` when statistics stay local.

    - ``axis_name`` (JAX): the sum over the named mapped axis (``jax.pmap``, ``jax.vmap``,
      ``shard_map``), ``jax.lax.psum``. With ``axis_index_groups`` (a partition of the replica
      indices into groups of equal size, as Flax and ``jax.lax.psum`` take it) each replica sums
      over its own group only: Ghost BN across devices. The grouped sum is written as an
      ``all_gather`` followed by a product with the group-membership matrix, because ``jax.vmap``
      has no grouped collectives; it costs K per-channel vectors per replica.
    - ``synchronized=True`` (TensorFlow): ``all_reduce(SUM)`` in the current
      ``tf.distribute`` replica context, as Keras's ``synchronized`` does; outside any replica
      context the statistics are local.
    """
    if axis_name is not None:
        import jax
        import jax.numpy as jnp

        if axis_index_groups is None:
            return lambda t: jax.lax.psum(t, axis_name)
        replicas = sum(len(group) for group in axis_index_groups)
        membership = [[0.0] * replicas for _ in range(replicas)]
        for group in axis_index_groups:
            for i in group:
                for j in group:
                    membership[i][j] = 1.0
        membership = jnp.asarray(membership)

        def grouped_sum(t):
            gathered = jax.lax.all_gather(t, axis_name)  # (K, *t.shape)
            row = membership[jax.lax.axis_index(axis_name)].astype(t.dtype)  # (K,)
            return jnp.tensordot(row, gathered, axes=1)

        return grouped_sum
    if synchronized:
        import tensorflow as tf

        def all_reduce(t):
            context = tf.distribute.get_replica_context()
            if context is None:
                return t
            return context.all_reduce(tf.distribute.ReduceOp.SUM, t)

        return all_reduce
    return None


def check_replica_arguments(axis_name, axis_index_groups, synchronized, backend):
    """UserError, naming the argument, for replica arguments the backend cannot honour."""
    if synchronized and backend != "tensorflow":
        raise UserError(
            "Argument synchronized=True is only supported with the TensorFlow backend "
            f"(this one is {backend!r}); on JAX use axis_name= instead."
        )
    if axis_name is not None:
        if backend != "jax":
            raise UserError(
                f"axis_name={axis_name!r} is only supported with the JAX backend (this one is "
                f"{backend!r}); on TensorFlow use synchronized=True; allowed here: axis_name=None."
            )
        if synchronized:
            raise UserError("Pass either axis_name= (JAX) or synchronized=True (TensorFlow), "
                             "not both.")
    if axis_index_groups is None:
        return
    if axis_name is None:
        raise UserError("axis_index_groups needs axis_name= (the mapped axis its indices refer "
                         f"to); got axis_index_groups={axis_index_groups!r} and axis_name=None.")
    groups = [list(g) for g in axis_index_groups]
    indices = sorted(i for g in groups for i in g)
    if (
        not groups
        or any(not isinstance(i, int) or isinstance(i, bool) for i in indices)
        or len({len(g) for g in groups}) != 1
        or indices != list(range(len(indices)))
    ):
        raise UserError(
            "axis_index_groups must be a partition of the replica indices 0..K-1 into groups of "
            f"equal size, e.g. [[0, 1], [2, 3]]; got axis_index_groups={axis_index_groups!r}."
        )

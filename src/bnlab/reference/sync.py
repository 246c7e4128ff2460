r"""Cross-replica (synchronized) BN: BN over the concatenated global batch.

With the global batch split over K replicas as shards x₁ … x_K along the batch axis, synchronized
BN (Keras's ``synchronized=True`` on TensorFlow, Flax's ``axis_name``) normalises every shard with
the moments of the whole batch, ``concat(x₁ … x_K)``, computed two-pass as in ``bn.py``::

    μ  = Σ_i Σ x_i / Σ_i N_i,   σ² = Σ_i Σ (x_i − μ)² / Σ_i N_i

so its outputs, gradients and moving statistics are exactly BN's on the concatenated batch; there is
nothing else to specify. Syncing only within groups of replicas (Flax's ``axis_index_groups``) is
Ghost BN across devices: BN over each group's concatenation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .bn import Cache, forward, moments, reduction_axes

__all__ = ["cross_replica_moments", "cross_replica_forward"]


def cross_replica_moments(shards: Sequence, axis: int | Sequence[int] = -1):
    """Mean and biased variance, shape of the kept axes, of the shards' concatenation on axis 0."""
    x = np.concatenate([np.asarray(s) for s in shards], axis=0)
    return moments(x, reduction_axes(x.ndim, axis))


def cross_replica_forward(shards: Sequence, gamma=None, beta=None, **kwargs
                          ) -> tuple[list[np.ndarray], Cache]:
    """Synchronized BN's output per shard: ``forward`` on the concatenation, split back.

    ``kwargs`` are ``forward``'s; the cache is that of the concatenated batch.
    """
    shards = [np.asarray(s) for s in shards]
    y, cache = forward(np.concatenate(shards, axis=0), gamma, beta, **kwargs)
    return np.split(y, np.cumsum([len(s) for s in shards])[:-1], axis=0), cache

r"""NumPy forward and hand-derived backward passes of BN and its variants: the executable
specification every layer in bnlab is tested against, and the reference itself against finite
differences (float64).

    bn.py          Batch Normalization (Ioffe & Szegedy, 2015): the moments every variant shares,
                   masks, momentum or cumulative (``momentum=None``) moving averages
    renorm.py      Batch Renormalization (Ioffe, 2017), Keras 3.15's conventions, and the
                   paper's relaxation schedule of the clipping
    ghost.py       Ghost BN: statistics per virtual batch of k examples
    sync.py        cross-replica (synchronized) BN: BN over the concatenated global batch
    torch_port.py  weights and momentum to and from PyTorch's BatchNorm
"""

from .bn import (Cache, backward, batch_norm, cumulative_average, forward, mask_weights, moments,
                 reduction_axes, update_moving)
from .ghost import GhostCache, ghost_backward, ghost_batch_norm, ghost_forward
from .renorm import (RenormCache, batch_renorm, relaxed_clipping, renorm_backward,
                     renorm_correction, renorm_forward, renorm_state, renorm_update)
from .sync import cross_replica_forward, cross_replica_moments
from .torch_port import (from_torch, keras_weights, momentum_from_torch, momentum_to_torch,
                         to_torch, weights_dict)

__all__ = [
    "reduction_axes", "moments", "mask_weights", "forward", "backward", "update_moving",
    "cumulative_average", "batch_norm", "Cache",
    "renorm_state", "renorm_correction", "renorm_forward", "renorm_backward", "renorm_update",
    "batch_renorm", "relaxed_clipping", "RenormCache",
    "ghost_forward", "ghost_backward", "ghost_batch_norm", "GhostCache",
    "cross_replica_moments", "cross_replica_forward",
    "momentum_to_torch", "momentum_from_torch", "to_torch", "from_torch",
    "keras_weights", "weights_dict",
]

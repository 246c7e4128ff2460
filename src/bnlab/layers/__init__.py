"""Keras layers written with ``keras.ops``: BN and its variants, and the fast convolutions.

``batchnorm`` holds :class:`BatchNorm`, the drop-in for ``keras.layers.BatchNormalization``;
``fast_conv`` holds Keras's ``Conv2D`` and ``MaxPooling2D`` with ``xla_cpu``'s gradients on JAX
on a CPU; ``finetune`` the layers of the studies that train part of a network
(``MovingStatisticsBN``, ``ChannelTunedConv2D``); ``noise`` the smoothness study's random
per-channel scale and shift after BN (``ChannelNoise``).
"""

from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.fast_conv import Conv2D, MaxPooling2D
from bnlab.layers.finetune import ChannelTunedConv2D, MovingStatisticsBN

__all__ = ["BatchNorm", "ChannelTunedConv2D", "Conv2D", "MaxPooling2D", "MovingStatisticsBN"]

"""Layers for the studies that train only part of a network (Frankle et al. 2021; fine-tuning).

``MovingStatisticsBN``  bnlab's ``BatchNorm`` that always normalizes with its moving statistics
    and never updates them, while γ and β stay trainable: PyTorch's ``bn.eval()`` during
    fine-tuning. (Keras's ``trainable=False`` on a BN layer is *FrozenBN*: moving statistics
    *and* fixed γ, β.) ``y = γ · (x − μ_moving) / √(σ²_moving + ε) + β`` in training too.

``ChannelTunedConv2D``  bnlab's ``Conv2D`` whose kernel W (kh, kw, c_in, c_out) is frozen at
    its initial value except ``tuned`` entries per output channel, chosen at random (fixed by
    ``tuned_seed``): the effective kernel is::

        W_eff[p_jc, c] = W[p_jc, c] + δ[j, c]      j < tuned, p_jc a random fan-in position
        W_eff          = W elsewhere                 (δ: a trainable (tuned, c_out), zeros at start)

    so the layer trains ``tuned · c_out`` parameters: as many as BN's γ and β after it when
    ``tuned`` = 2 (Frankle et al.'s control for "train only BatchNorm"). The bias, if any, is
    frozen too.
"""

import keras
import numpy as np
from keras import ops

from bnlab.layers.batchnorm import BatchNorm
from bnlab.layers.fast_conv import Conv2D


@keras.saving.register_keras_serializable(package="bnlab")
class MovingStatisticsBN(BatchNorm):
    """``BatchNorm`` in inference mode whatever ``training`` says; γ and β still train."""

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


@keras.saving.register_keras_serializable(package="bnlab")
class ChannelTunedConv2D(Conv2D):
    """``Conv2D`` with all weights frozen but ``tuned`` kernel entries per output channel."""

    def __init__(self, *args, tuned=2, tuned_seed=0, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(tuned, int) or tuned < 1:
            raise ValueError(f"tuned must be a positive int, got {tuned!r}")
        self.tuned, self.tuned_seed = tuned, int(tuned_seed)

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel.trainable = False
        if self.use_bias:
            self.bias.trainable = False
        *window, c_out = self.kernel.shape
        fan_in = int(np.prod(window))
        if self.tuned > fan_in:
            raise ValueError(f"tuned={self.tuned} exceeds the kernel's fan-in {fan_in}")
        rng = np.random.default_rng(self.tuned_seed)
        # positions[j, c]: the j-th tuned fan-in entry of channel c (distinct within a channel)
        self.positions = np.stack([rng.choice(fan_in, self.tuned, replace=False)
                                   for _ in range(c_out)], axis=1)
        selector = np.zeros((self.tuned, fan_in, c_out), dtype="float32")
        for j in range(self.tuned):
            selector[j, self.positions[j], np.arange(c_out)] = 1.0
        self._selector = selector.reshape((self.tuned, *window, c_out))
        self.delta = self.add_weight(shape=(self.tuned, c_out), name="delta",
                                     initializer="zeros", trainable=True)

    def effective_kernel(self, kernel=None):
        """W + Σ_j selector_j · δ[j] (the module docstring's W_eff)."""
        kernel = self.kernel if kernel is None else kernel
        selector = ops.convert_to_tensor(self._selector, dtype=kernel.dtype)
        return kernel + ops.sum(selector * ops.reshape(self.delta, (self.tuned, 1, 1, 1, -1)),
                                axis=0)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, self.effective_kernel(kernel))

    def get_config(self):
        return {**super().get_config(), "tuned": self.tuned, "tuned_seed": self.tuned_seed}

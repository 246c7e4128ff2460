"""A random per-channel scale and shift, resampled at every training call: the "noisy BN" of
Santurkar et al. (2018, Fig. 2), put right after a BN layer so that the distribution of the
next layer's input is *non-stationary* although BN normalized it.

In training, for an input x (..., C), with fresh draws at every call (every training step)::

    y = s ⊙ x + b,   s_c = exp(σ_s · z_c),   b_c = σ_b · u_c,   z_c, u_c ~ N(0, 1) i.i.d.

so each channel's scale is log-normal (median 1, always positive: the sign of a feature never
flips) and its shift Gaussian with mean 0 and standard deviation σ_b; one draw is shared by every
example and position of the batch, so each step moves the whole batch's distribution. In
inference (``training=False``) the layer is the identity. It has no weights; its random state
is a ``keras.random.SeedGenerator`` (a non-trainable variable), so a stateless call
(``bnlab.lab.multiseed``) carries it forward like a moving statistic.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bnlab")
class ChannelNoise(keras.layers.Layer):
    def __init__(self, scale_std=0.5, shift_std=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.scale_std, self.shift_std, self.seed = float(scale_std), float(shift_std), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x
        channels = (x.shape[-1],)
        z = keras.random.normal(channels, seed=self.seed_generator)
        u = keras.random.normal(channels, seed=self.seed_generator)
        return x * ops.cast(ops.exp(self.scale_std * z), x.dtype) + \
            ops.cast(self.shift_std * u, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale_std": self.scale_std,
                "shift_std": self.shift_std, "seed": self.seed}

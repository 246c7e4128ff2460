"""Keras layers that the conversion needs beyond bnlab's ``BatchNorm``."""

import keras

from bnlab.layers import BatchNorm


@keras.saving.register_keras_serializable(package="bnlab")
class BatchStatisticsOnly(BatchNorm):
    """BN that always normalizes with the batch statistics and keeps no moving ones, as PyTorch's
    ``BatchNorm(track_running_stats=False)`` (or a module left in training mode) does: its
    ``training`` argument is ignored, and its moving statistics never change (momentum 1)."""

    def __init__(self, **kwargs):
        kwargs["momentum"] = 1.0
        super().__init__(**kwargs)

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=True, mask=mask)

    def get_config(self):
        config = super().get_config()
        config.pop("momentum", None)
        return config

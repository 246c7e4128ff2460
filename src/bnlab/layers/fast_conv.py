"""Keras's ``Conv2D`` and ``MaxPooling2D``, with faster derivatives on JAX on the CPU.

Each is the Keras layer itself (constructor, weights, config, output): only the op it calls
changes, and only where ``bnlab.layers.xla_cpu`` has a faster form of the same math — the JAX backend on
a CPU, channels-last data, no dilation or groups; pooling with window = strides and "valid"
padding. Everywhere else (TensorFlow, PyTorch, JAX on a GPU, other settings) they call exactly what
Keras's layers call. The tests hold both against Keras's layers, forward and gradient.
"""

import keras


def _fast_path():
    """True on the JAX backend running on a CPU, where bnlab.layers.xla_cpu applies."""
    if keras.backend.backend() != "jax":
        return False
    import jax  # the JAX backend is in use, so JAX is installed and loaded

    return jax.default_backend() == "cpu"


@keras.saving.register_keras_serializable(package="bnlab")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D``; on JAX on the CPU its input gradient is one matrix product.

    ``input_gradient``: how that product's blocks are added back, ``"sum"`` or ``"scatter"`` —
    ``"scatter"`` for a convolution whose input comes from max pooling (see
    ``bnlab.layers.xla_cpu.conv2d``). Every other argument is Keras's.
    """

    def __init__(self, *args, input_gradient="sum", **kwargs):
        super().__init__(*args, **kwargs)
        if input_gradient not in ("sum", "scatter"):
            raise ValueError(f"input_gradient must be 'sum' or 'scatter', not {input_gradient!r}")
        self.input_gradient = input_gradient

    def get_config(self):
        return {**super().get_config(), "input_gradient": self.input_gradient}

    def convolution_op(self, inputs, kernel):
        if (not _fast_path() or self.data_format != "channels_last" or self.groups != 1
                or tuple(self.dilation_rate) != (1, 1)):
            return super().convolution_op(inputs, kernel)
        from bnlab.layers import xla_cpu

        return xla_cpu.conv2d(inputs, keras.ops.convert_to_tensor(kernel), tuple(self.strides),
                              self.padding, self.input_gradient)


@keras.saving.register_keras_serializable(package="bnlab")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D``; on JAX on the CPU its gradient is a mask, not a scatter."""

    def call(self, inputs):
        if (not _fast_path() or self.data_format != "channels_last" or self.padding != "valid"
                or tuple(self.pool_size) != tuple(self.strides)):
            return super().call(inputs)
        from bnlab.layers import xla_cpu

        return xla_cpu.max_pool(inputs, tuple(self.pool_size))

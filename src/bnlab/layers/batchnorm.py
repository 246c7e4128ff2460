"""Batch Normalization written from scratch with ``keras.ops``, so it runs on every Keras backend.

For an input ``x`` whose channel axis is ``axis`` (C channels) and whose other axes are reduced
(N, or N·H·W for images), in training mode (Ioffe & Szegedy, 2015)::

    μ_B   = mean(x)                      over the reduction axes, per channel      (C,)
    σ²_B  = mean((x − μ_B)²)             two-pass and biased (divides by N)        (C,)
    x̂     = (x − μ_B) / √(σ²_B + ε)
    y     = γ · x̂ + β

and the moving statistics follow Keras's momentum convention (PyTorch's ``momentum`` is 1 − this)::

    moving_mean     ← momentum · moving_mean     + (1 − momentum) · μ_B
    moving_variance ← momentum · moving_variance + (1 − momentum) · σ²_B

The stored variance is the biased batch variance, as Keras stores it; ``unbiased_moving_variance=True``
stores N/(N−1)·σ²_B instead, as PyTorch does, so that training runs can be ported exactly. In
inference mode μ_B and σ²_B are replaced by the moving statistics.

Numerics: the variance is computed as the mean of squared deviations from the mean (never
E[x²] − E[x]², which loses every digit when |mean| ≫ std), and the statistics and the normalization
are computed in at least float32 even when the layer computes in float16 or bfloat16.

The layer is a drop-in for ``keras.layers.BatchNormalization``: the same constructor arguments where
they overlap, the same four weights in the same order (``gamma``, ``beta`` trainable;
``moving_mean``, ``moving_variance`` not), so ``set_weights``/``get_weights`` work both ways, and the
same ``trainable=False`` rule (a frozen BN layer runs in inference mode). ``bnlab.reference`` is the
NumPy specification the tests hold this layer against.
"""

import keras
from keras import ops

_LOW_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package="bnlab")
class BatchNorm(keras.layers.Layer):
    """Batch Normalization from ``keras.ops``.

    Args:
        axis: the channel axis kept (not reduced); ``-1`` for NHWC and dense inputs, ``1`` for NCHW.
        momentum: weight of the old value in the moving averages (Keras convention).
        epsilon: added to the variance before the square root.
        center, scale: learn β / γ; when off, β = 0 / γ = 1 and the weight is not created.
        unbiased_moving_variance: store N/(N−1)·σ²_B in the moving variance (PyTorch's convention).
        The initializers, regularizers and constraints are those of Keras's layer.

    Call arguments:
        inputs: a tensor of any rank ≥ 2. (Masks are not supported: Keras's layer excludes masked
            steps from the statistics; this one does not take a mask at all.)
        training: ``True`` normalizes with the batch statistics and updates the moving ones;
            ``False`` or ``None`` uses the moving statistics. A layer with ``trainable=False``
            always runs in inference mode.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        unbiased_moving_variance=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
        if float(epsilon) <= 0.0:
            raise ValueError(f"BatchNorm epsilon must be > 0, got {epsilon}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"BatchNorm axis={self.axis} is out of range for inputs of rank {rank} "
                f"(shape {tuple(input_shape)})"
            )
        channel_axis = self.axis % rank
        channels = input_shape[channel_axis]
        if channels is None:
            raise ValueError(
                f"BatchNorm needs a known size on its channel axis {self.axis}; "
                f"got input shape {tuple(input_shape)}"
            )
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={channel_axis: channels})
        self._reduction_axes = tuple(a for a in range(rank) if a != channel_axis)
        # Parameters of shape (C,) broadcast against x as (1, .., C, .., 1).
        self._broadcast_shape = tuple(channels if a == channel_axis else 1 for a in range(rank))

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        # Statistics and normalization in at least float32, whatever the compute dtype.
        x = inputs
        if keras.backend.standardize_dtype(x.dtype) in _LOW_PRECISION:
            x = ops.cast(x, "float32")

        if training and self.trainable:
            mean, variance = self._batch_moments(x)
            self._update_moving_statistics(mean, variance, x)
        else:
            mean = ops.cast(self.moving_mean, x.dtype)
            variance = ops.cast(self.moving_variance, x.dtype)

        # y = γ (x − μ) / √(σ² + ε) + β, written as x · inv + (β − μ · inv) with inv = γ / √(σ² + ε)
        # so that the per-channel work is done on (C,) vectors and x is touched once.
        inv = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * ops.cast(self.gamma, x.dtype)
        shift = -mean * inv
        if self.center:
            shift = shift + ops.cast(self.beta, x.dtype)
        outputs = x * ops.reshape(inv, self._broadcast_shape) + ops.reshape(
            shift, self._broadcast_shape
        )
        return ops.cast(outputs, self.compute_dtype)

    def _batch_moments(self, x):
        """Per-channel batch mean and biased variance, two-pass: mean first, then mean((x − μ)²)."""
        mean = ops.mean(x, axis=self._reduction_axes, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=self._reduction_axes, keepdims=True)
        return ops.reshape(mean, (-1,)), ops.reshape(variance, (-1,))

    def _update_moving_statistics(self, mean, variance, x):
        if self.unbiased_moving_variance:
            n = 1
            for a in self._reduction_axes:
                n = n * ops.shape(x)[a]
            n = ops.cast(n, variance.dtype)
            variance = variance * n / ops.maximum(n - 1.0, 1.0)
        m = self.momentum
        moving_mean = ops.cast(self.moving_mean, mean.dtype)
        moving_variance = ops.cast(self.moving_variance, variance.dtype)
        self.moving_mean.assign(
            ops.cast(moving_mean * m + mean * (1.0 - m), self.moving_mean.dtype)
        )
        self.moving_variance.assign(
            ops.cast(moving_variance * m + variance * (1.0 - m), self.moving_variance.dtype)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "unbiased_moving_variance": self.unbiased_moving_variance,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": keras.initializers.serialize(
                    self.moving_mean_initializer
                ),
                "moving_variance_initializer": keras.initializers.serialize(
                    self.moving_variance_initializer
                ),
                "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": keras.constraints.serialize(self.beta_constraint),
                "gamma_constraint": keras.constraints.serialize(self.gamma_constraint),
            }
        )
        return config

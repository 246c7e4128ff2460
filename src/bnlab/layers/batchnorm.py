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

The variants change one step each, in their own module, and share ``statistics.moments`` (the
two-pass moments above, with a mask, per group, across replicas):

- ``renorm=True`` — Batch Renormalization, ``renorm.py``: (r, d) corrections towards the moving
  statistics, and two more pairs of moving statistics.
- ``virtual_batch_size=k`` — Ghost BN, ``ghost.py``: statistics per group of k examples.
- ``axis_name=`` (JAX) / ``synchronized=True`` (TensorFlow) — the statistics of the global batch
  across replicas, ``statistics.replica_sum``; ``axis_index_groups`` syncs within groups only.
- ``mask=`` — masked steps are left out of the statistics (``statistics.moments``).
- ``momentum=None`` — the moving statistics are the cumulative average of all batches seen
  (PyTorch's ``momentum=None``): after the n-th training batch, with n counted in the
  non-trainable weight ``num_batches_tracked``, ``moving ← moving + (stat − moving) / n``, i.e.
  the momentum of step n is 1 − 1/n.

The layer is a drop-in for ``keras.layers.BatchNormalization``: the same constructor and call
arguments, the same weights in the same order with the same trainability for every argument
combination (``gamma``, ``beta`` trainable; ``moving_mean``, ``moving_variance`` and, with
``renorm=True``, ``moving_stddev``, ``renorm_mean``, ``renorm_stddev`` not), so
``set_weights``/``get_weights`` work both ways, and the same ``trainable=False`` rule (a frozen BN
layer runs in inference mode). Only ``momentum=None`` and ``renorm_relaxation`` (beyond Keras:
the renorm paper's schedule of the clipping) add a weight (a step counter, last).
``bnlab.reference`` is the NumPy specification the tests hold this layer against.
"""

import keras
from keras import ops

from bnlab.errors import UserError
from bnlab.layers import closed_form, ghost, native, statistics
from bnlab.layers import renorm as batch_renorm

_LOW_PRECISION = ("float16", "bfloat16")
GRADIENTS = ("autodiff", "closed-form", "native")


@keras.saving.register_keras_serializable(package="bnlab")
class BatchNorm(keras.layers.Layer):
    """Batch Normalization and its variants from ``keras.ops``.

    Args:
        axis: the channel axis kept (not reduced); ``-1`` for NHWC and dense inputs, ``1`` for NCHW.
        momentum: weight of the old value in the moving averages (Keras convention); ``None``
            for the cumulative average of all batches seen.
        epsilon: added to the variance before the square root.
        center, scale: learn β / γ; when off, β = 0 / γ = 1 and the weight is not created.
        The initializers, regularizers and constraints are those of Keras's layer.
        renorm, renorm_clipping, renorm_momentum: Batch Renormalization (``renorm.py``);
            ``renorm_clipping`` takes the keys ``rmax``, ``rmin``, ``dmax``.
        renorm_relaxation: beyond Keras: the renorm paper's schedule, ``{"hold": H, "rmax_at":
            R, "dmax_at": D}`` (steps): plain BN (r = 1, d = 0) for H steps, then rmax and dmax
            opened linearly to ``renorm_clipping``'s by steps R and D (``renorm.py``). It adds
            one non-trainable weight, ``renorm_steps`` (last).
        synchronized: TensorFlow only: statistics of the global batch of a ``tf.distribute`` step.
        virtual_batch_size: Ghost BN (``ghost.py``): statistics per group of this many examples
            in training (the last group smaller when it does not divide the batch size).
        axis_name: JAX only: the name of the mapped axis (``pmap``/``vmap``/``shard_map``) whose
            replicas share the statistics of their global batch.
        axis_index_groups: with ``axis_name``, groups of replica indices that share statistics
            (a partition into equal groups, as ``jax.lax.psum`` takes it).
        unbiased_moving_variance: store n/(n−1)·σ²_B in the moving variance (PyTorch's convention).
        gradient: ``"autodiff"`` (the backend differentiates the code above), ``"closed-form"``
            (``closed_form.py``: the same normalization with its gradient written from x̂ and two
            sums; renorm keeps autodiff) or ``"native"`` (the same training step by the C++
            kernels of ``native.py``, one call forward and one backward, on JAX on a CPU where
            they are built, for the channels last without renorm, replicas or a mask, Ghost BN
            where k divides the batch; elsewhere the closed form).

    Call arguments:
        inputs: a tensor of any rank ≥ 2.
        training: ``True`` normalizes with the batch statistics and updates the moving ones;
            ``False`` or ``None`` uses the moving statistics. A layer with ``trainable=False``
            always runs in inference mode.
        mask: optional tensor of the inputs' shape without the last axis (Keras's convention: it
            is broadcast along the last axis); False steps are left out of the statistics.
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
        renorm=False,
        renorm_clipping=None,
        renorm_momentum=0.99,
        renorm_relaxation=None,
        synchronized=False,
        virtual_batch_size=None,
        axis_name=None,
        axis_index_groups=None,
        unbiased_moving_variance=False,
        gradient="autodiff",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise UserError(f"BatchNorm momentum must be in [0, 1] or None, got {momentum}")
        if float(epsilon) <= 0.0:
            raise UserError(f"BatchNorm epsilon must be > 0, got {epsilon}")
        if not 0.0 <= float(renorm_momentum) <= 1.0:
            raise UserError(f"BatchNorm renorm_momentum must be in [0, 1], got {renorm_momentum}")
        batch_renorm.check_clipping(renorm_clipping)
        if renorm_relaxation is not None:
            if not renorm:
                raise UserError("renorm_relaxation needs renorm=True")
            batch_renorm.check_relaxation(renorm_relaxation, renorm_clipping)
        if gradient not in GRADIENTS:
            raise UserError(f"BatchNorm gradient must be one of {GRADIENTS}, got {gradient!r}")
        ghost.check_size(virtual_batch_size)
        statistics.check_replica_arguments(
            axis_name, axis_index_groups, synchronized, keras.backend.backend()
        )
        self.axis = int(axis)
        self.momentum = None if momentum is None else float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.renorm = bool(renorm)
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = float(renorm_momentum)
        self.renorm_relaxation = None if renorm_relaxation is None else dict(renorm_relaxation)
        self.synchronized = bool(synchronized)
        self.virtual_batch_size = virtual_batch_size
        self.axis_name = axis_name
        self.axis_index_groups = (
            None if axis_index_groups is None else [list(g) for g in axis_index_groups]
        )
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        self.gradient = gradient
        self.supports_masking = True
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise UserError(
                f"BatchNorm axis={self.axis} is out of range for inputs of rank {rank} "
                f"(shape {tuple(input_shape)})"
            )
        channel_axis = self.axis % rank
        channels = input_shape[channel_axis]
        if channels is None:
            raise UserError(
                f"BatchNorm needs a known size on its channel axis {self.axis}; "
                f"got input shape {tuple(input_shape)}"
            )
        if self.virtual_batch_size is not None and channel_axis == 0:
            raise UserError(
                f"virtual_batch_size={self.virtual_batch_size} splits axis 0 (the batch), which "
                f"cannot be the channel axis (axis={self.axis}); allowed: an axis other than 0."
            )
        shape = (channels,)
        if self.scale:
            self.gamma = self._weight("gamma", shape, self.gamma_initializer, trainable=True,
                                      regularizer=self.gamma_regularizer,
                                      constraint=self.gamma_constraint)
        if self.center:
            self.beta = self._weight("beta", shape, self.beta_initializer, trainable=True,
                                     regularizer=self.beta_regularizer,
                                     constraint=self.beta_constraint)
        self.moving_mean = self._weight("moving_mean", shape, self.moving_mean_initializer)
        self.moving_variance = self._weight(
            "moving_variance", shape, self.moving_variance_initializer
        )
        if self.renorm:
            # Renorm tracks standard deviations, initialized as √ of the variance initializer.
            def stddev_initializer(shape, dtype=None):
                return ops.sqrt(_clone(self.moving_variance_initializer)(shape, dtype=dtype))

            self.moving_stddev = self._weight("moving_stddev", shape, stddev_initializer)
            self.renorm_mean = self._weight(
                "renorm_mean", shape, _clone(self.moving_mean_initializer)
            )
            self.renorm_stddev = self._weight("renorm_stddev", shape, stddev_initializer)
        if self.momentum is None:
            self.num_batches_tracked = self._weight(
                "num_batches_tracked", (), "zeros", dtype="int32"
            )
        if self.renorm_relaxation is not None:
            self.renorm_steps = self._weight("renorm_steps", (), "zeros", dtype="int32")
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={channel_axis: channels})
        self._reduction_axes = tuple(a for a in range(rank) if a != channel_axis)
        # Parameters of shape (C,) broadcast against x as (1, .., C, .., 1).
        self._broadcast_shape = tuple(channels if a == channel_axis else 1 for a in range(rank))

    def _weight(self, name, shape, initializer, trainable=False, dtype=None, **kwargs):
        return self.add_weight(shape=shape, name=name, initializer=initializer,
                               trainable=trainable, autocast=False, dtype=dtype, **kwargs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None, mask=None):
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            raise UserError(
                "The mask provided should be one dimension less than the inputs. "
                f"Received: mask.shape={mask.shape}, inputs.shape={inputs.shape}"
            )
        # Statistics and normalization in at least float32, whatever the compute dtype.
        x = inputs
        if keras.backend.standardize_dtype(x.dtype) in _LOW_PRECISION:
            x = ops.cast(x, "float32")
        if not (training and self.trainable):
            outputs = self._normalize(x, self._param(self.moving_mean, x),
                                      self._param(self.moving_variance, x))
            return ops.cast(outputs, self.compute_dtype)

        if self.gradient == "native" and mask is None and self._kernels_apply(x):
            return ops.cast(self._kernels_call(x), self.compute_dtype)
        if mask is not None:
            mask = ops.broadcast_to(ops.expand_dims(ops.cast(mask, "bool"), -1), ops.shape(x))
        shape, axes, ghosts = ops.shape(x), self._reduction_axes, self.virtual_batch_size
        shares = None
        if ghosts is not None:
            x, mask, shares = ghost.split(x, ghosts, mask)
            axes = tuple(a + 1 for a in axes)

        replica_sum = statistics.replica_sum(
            self.axis_name, self.axis_index_groups, self.synchronized
        )
        mean, variance, count = statistics.moments(x, axes, mask, replica_sum)
        r = d = None
        if self.renorm:
            clipping = self.renorm_clipping
            if self.renorm_relaxation is not None:
                clipping = batch_renorm.relaxed_clipping(self.renorm_steps, clipping,
                                                         self.renorm_relaxation)
                self.renorm_steps.assign(self.renorm_steps + 1)
            r, d = batch_renorm.correction(
                mean, variance, self._param(self.renorm_mean, x),
                self._param(self.renorm_stddev, x), self.epsilon, clipping,
            )
        self._update_moving_statistics(mean, variance, count, shares)
        if self.gradient in ("closed-form", "native") and not self.renorm:
            weights = None if mask is None else ops.cast(mask, x.dtype)
            outputs = closed_form.normalize(
                x, mean, variance, count, self._scale_or(self.gamma, 1.0, x),
                self._scale_or(self.beta, 0.0, x), self.epsilon, axes, weights, replica_sum)
        else:
            outputs = self._normalize(x, mean, variance, r, d)
        if ghosts is not None:
            outputs = ghost.merge(outputs, shape)
        return ops.cast(outputs, self.compute_dtype)

    def _kernels_apply(self, x):
        """Whether ``native.batch_norm`` computes this layer's training step on x: BN or Ghost BN
        whose k divides the batch (no renorm, replicas or padded group), the channels last, x
        float32, the kernels built."""
        k = self.virtual_batch_size
        plain = not (self.renorm or self.synchronized or self.axis_name is not None)
        whole_groups = k is None or (bool(x.shape[0]) and x.shape[0] % k == 0)  # N > 0
        return (plain and whole_groups and self.axis in (-1, len(x.shape) - 1)
                and native.applies(x))

    def _kernels_call(self, x):
        """The training step by ``native.batch_norm``: y, and the moving statistics updated.
        Ghost BN's G virtual batches are the kernels' groups: x (G, k·…, C), μ and σ² (G, C)."""
        channels = x.shape[-1]
        gamma = ops.reshape(self._scale_or(self.gamma, 1.0, x), (channels,))
        beta = ops.reshape(self._scale_or(self.beta, 0.0, x), (channels,))
        groups = 1 if self.virtual_batch_size is None else x.shape[0] // self.virtual_batch_size
        y, mean, variance = native.batch_norm(ops.reshape(x, (groups, -1, channels)), gamma, beta,
                                              self.epsilon)
        count = ops.cast(x.size // channels // groups, x.dtype)
        self._update_moving_statistics(ops.stop_gradient(mean), ops.stop_gradient(variance), count)
        return ops.reshape(y, x.shape)

    def _param(self, weight, x):
        """A (C,) weight as x's dtype, shaped to broadcast against x (grouped or not)."""
        shape = (1,) * (len(x.shape) - len(self._broadcast_shape)) + self._broadcast_shape
        return ops.reshape(ops.cast(weight, x.dtype), shape)

    def _scale_or(self, weight, value, x):
        """γ or β as ``_param`` gives it, or the constant ``value`` when the layer has none."""
        if weight is None:
            shape = (1,) * (len(x.shape) - len(self._broadcast_shape)) + self._broadcast_shape
            return ops.full(shape, value, dtype=x.dtype)
        return self._param(weight, x)

    def _normalize(self, x, mean, variance, r=None, d=None):
        """y = γ · (r · (x − μ) / √(σ² + ε) + d) + β, with r = 1, d = 0 outside renorm.

        Written as x · a + b with a = γ r / √(σ² + ε) and b = γ (d − μ r / √(σ² + ε)) + β, so
        that the per-channel work is done on statistics-shaped tensors and x is touched once.
        """
        a = ops.rsqrt(variance + self.epsilon)
        if r is not None:
            a = a * r
        b = -mean * a
        if d is not None:
            b = b + d
        if self.scale:
            gamma = self._param(self.gamma, x)
            a, b = a * gamma, b * gamma
        if self.center:
            b = b + self._param(self.beta, x)
        return x * a + b

    def _update_moving_statistics(self, mean, variance, count, shares=None):
        """Moving averages of the batch statistics; Ghost BN's groups are averaged first
        (weighted by their ``shares`` of the batch when they differ in size)."""
        if self.unbiased_moving_variance:
            variance = variance * count / ops.maximum(count - 1.0, 1.0)
        if self.virtual_batch_size is not None:
            mean, variance = ghost.pool(mean, shares), ghost.pool(variance, shares)
        mean, variance = ops.reshape(mean, (-1,)), ops.reshape(variance, (-1,))
        momentum = self.momentum
        if momentum is None:  # cumulative average: the n-th batch has weight 1/n
            n = self.num_batches_tracked + 1
            self.num_batches_tracked.assign(n)
            momentum = 1.0 - 1.0 / ops.cast(n, mean.dtype)
        if self.renorm:
            names = ("renorm_mean", "renorm_stddev", "moving_mean", "moving_stddev")
            state = {k: ops.cast(getattr(self, k), mean.dtype) for k in names}
            updates = batch_renorm.moving_updates(mean, variance, state, momentum,
                                            self.renorm_momentum, self.epsilon)
        else:
            updates = {
                "moving_mean": ops.cast(self.moving_mean, mean.dtype) * momentum
                + mean * (1.0 - momentum),
                "moving_variance": ops.cast(self.moving_variance, variance.dtype) * momentum
                + variance * (1.0 - momentum),
            }
        for name, value in updates.items():
            weight = getattr(self, name)
            weight.assign(ops.cast(value, weight.dtype))

    def get_config(self):
        config = super().get_config()
        serialize = {
            "initializer": keras.initializers.serialize,
            "regularizer": keras.regularizers.serialize,
            "constraint": keras.constraints.serialize,
        }
        config.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **{
                name: serialize[name.rsplit("_", 1)[1]](getattr(self, name))
                for name in (
                    "beta_initializer", "gamma_initializer", "moving_mean_initializer",
                    "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
                    "beta_constraint", "gamma_constraint",
                )
            },
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
            "renorm_relaxation": self.renorm_relaxation,
            "synchronized": self.synchronized,
            "virtual_batch_size": self.virtual_batch_size,
            "axis_name": self.axis_name,
            "axis_index_groups": self.axis_index_groups,
            "unbiased_moving_variance": self.unbiased_moving_variance,
            "gradient": self.gradient,
        })
        return config


def _clone(initializer):
    """A fresh copy of an initializer object (a new seed for a second use), as Keras does."""
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer

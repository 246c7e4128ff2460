"""Scale-invariant weights and an SGD that records their norms at every step.

A kernel W whose every output unit feeds a batch norm directly (Dense or conv without bias →
BN) is scale-invariant: L(c·W) = L(W) for c > 0 (up to BN's ε), so its gradient is orthogonal to
it, ⟨W, ∇L(W)⟩ = 0, and plain SGD (w_{t+1} = w_t − η g_t) changes its norm only by

    ‖w_{t+1}‖² = ‖w_t‖² + η² ‖g_t‖²                        (Arora et al. 2019, Lemma 2.4)

so ‖w‖ only grows, and the effective step on the direction w/‖w‖ is η/‖w‖² (van Laarhoven
2017; Hoffer et al. 2018). With weight decay λ (Keras's: w ← (1 − ηλ) w before the step),
‖w_{t+1}‖² = (1 − ηλ)² ‖w_t‖² + η² ‖g_t‖².

``TracedSGD`` is Keras's SGD that records, for every kernel of the model and every step t:
‖w_t‖² (before the step), ‖g_t‖² and the measured change ‖w_{t+1}‖² − ‖w_t‖², computed as
⟨w_{t+1} − w_t, w_{t+1} + w_t⟩ (the difference of squares without the cancellation of two large
float32 norms). With ``invariant_scale`` c it is the arm (c·w₀, c²·η): the scale-invariant kernels
start c times larger and step with c²η (every other weight keeps w₀ and η), which in exact
arithmetic gives the same network function at every step as (w₀, η).

``TracedSGD.for_trial(config, model, **arguments)`` makes it for a trial (it records
``config["steps"]`` steps); ``trace(optimizer)`` reads the record back as NumPy arrays.
"""

import keras
import numpy as np
from keras import ops

NORM_TYPES = (keras.layers.BatchNormalization, keras.layers.GroupNormalization,
              keras.layers.LayerNormalization)


def _is_norm(layer):
    from bnlab.layers import BatchNorm

    return isinstance(layer, NORM_TYPES + (BatchNorm,))


def kernels(model):
    """[(layer, scale-invariant?)] for every Dense or conv layer of a Sequential ``model``, in
    order: invariant when it has no bias and the next layer is a norm (its every output unit is
    normalized over the batch, so scaling the kernel changes nothing downstream)."""
    layers = model.layers
    found = []
    for i, layer in enumerate(layers):
        if not hasattr(layer, "kernel"):
            continue
        after = layers[i + 1] if i + 1 < len(layers) else None
        invariant = not getattr(layer, "use_bias", True) and after is not None and _is_norm(after)
        found.append((layer, invariant))
    return found


@keras.saving.register_keras_serializable(package="bnlab")
class TracedSGD(keras.optimizers.SGD):
    """Plain SGD (no momentum) that records its kernels' norms each step (module docstring).

    ``tracked``: the indices of the kernels among the model's trainable variables;
    ``multipliers``: each tracked kernel's learning-rate factor; ``steps``: how many steps to
    record (later steps are trained but not recorded)."""

    def __init__(self, learning_rate=0.01, *, steps, tracked, multipliers=None, **kwargs):
        if kwargs.get("momentum"):
            raise ValueError("TracedSGD is plain SGD: the norm identity needs momentum 0")
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.steps, self.tracked = int(steps), [int(i) for i in tracked]
        self.multipliers = [float(m) for m in (multipliers or [1.0] * len(self.tracked))]

    @classmethod
    def for_trial(cls, config, model, invariant_scale=1.0, **arguments):
        """The optimizer of ``config`` for ``model`` (already built and seeded). With
        ``invariant_scale`` c ≠ 1 it multiplies the scale-invariant kernels by c here and gives
        them c² times the learning rate."""
        if invariant_scale != 1.0 and arguments.get("weight_decay"):
            raise ValueError("invariant_scale with weight decay has no equivalent (w0, eta) arm")
        where = {id(v): i for i, v in enumerate(model.trainable_variables)}
        tracked, multipliers = [], []
        for layer, invariant in kernels(model):
            tracked.append(where[id(layer.kernel)])
            multipliers.append(invariant_scale ** 2 if invariant else 1.0)
            if invariant and invariant_scale != 1.0:
                layer.kernel.assign(layer.kernel * invariant_scale)
        return cls(steps=config["steps"], tracked=tracked, multipliers=multipliers, **arguments)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        shape = (self.steps, len(self.tracked))
        self.records = [self.add_variable(shape, initializer="zeros", name=name)
                        for name in ("w_squared", "g_squared", "w_change")]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        if index in self.tracked:
            learning_rate = learning_rate * self.multipliers[self.tracked.index(index)]
        super().update_step(gradient, variable, learning_rate)

    def _backend_apply_gradients(self, grads, trainable_variables):
        before = [trainable_variables[i].value for i in self.tracked]
        super()._backend_apply_gradients(grads, trainable_variables)
        after = [trainable_variables[i].value for i in self.tracked]
        rows = [[ops.sum(w * w) for w in before],
                [ops.sum(ops.square(ops.cast(grads[i], "float32"))) for i in self.tracked],
                [ops.sum((w1 - w0) * (w1 + w0)) for w0, w1 in zip(before, after)]]
        # clipped, so the steps past ``steps`` overwrite nothing (they are not recorded)
        step = ops.minimum(ops.cast(self._iterations, "int32"), self.steps)
        for record, row in zip(self.records, rows):
            padded = ops.concatenate([record.value, ops.zeros((1, len(self.tracked)))], axis=0)
            padded = ops.slice_update(padded, (step, 0), ops.expand_dims(ops.stack(row), 0))
            self.assign(record, padded[:self.steps])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "tracked": self.tracked,
                "multipliers": self.multipliers}


def trace(optimizer):
    """The record of a ``TracedSGD``: {"w_squared", "g_squared", "w_change"}, each (steps,
    kernels) float64 arrays, and "learning_rates" (kernels,), the learning rate of each kernel,
    "weight_decay" (0 when none)."""
    recorded = {name: np.asarray(record.value, dtype=np.float64) for name, record in
                zip(("w_squared", "g_squared", "w_change"), optimizer.records)}
    rate = float(np.asarray(optimizer.learning_rate))
    recorded["learning_rates"] = np.array([rate * m for m in optimizer.multipliers])
    recorded["weight_decay"] = float(optimizer.weight_decay or 0.0)
    return recorded


def identity_residual(recorded):
    """Per step and kernel, how far the measured change of ‖w‖² is from η²‖g‖² (plus the decay
    term), relative to η²‖g‖²: (Δ‖w‖² − ((1 − ηλ)² − 1)‖w‖² − η²‖g‖²) / η²‖g‖². Zero for a
    scale-invariant kernel in exact arithmetic (module docstring)."""
    rates = recorded["learning_rates"][None, :]
    shrink = (1 - rates * recorded["weight_decay"]) ** 2 - 1
    predicted = rates ** 2 * recorded["g_squared"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (recorded["w_change"] - shrink * recorded["w_squared"] - predicted) / predicted

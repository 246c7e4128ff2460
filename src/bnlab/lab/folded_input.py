"""The training call of a ``keras.Sequential`` model, with its BN layers computed faster.

Two changes, each where it applies; only the cost changes: outputs, moving statistics and the
gradient's values are those of ``model.stateless_call(..., training=True)`` up to float round-off
(tests/test_folded_input, tests/test_native_bn):

- the model's first layer with weights is a BN on its input followed by a Dense (``input_pair``):
  the pair as ``layers.folded_dense``, whose gradient gives the BN's γ and β theirs from the
  kernel's own product instead of a product of its own. The BN layer still gives the normalized
  input z = x̂ (its call with γ = 1 and β = 0) and updates its moving statistics as always; the
  folded product applies the real γ and β.
- every plain BN layer (``layers.native_bn.applies``: Keras's or bnlab's, no renorm or
  synchronized statistics; bnlab's Ghost BN where k divides the batch) is computed by
  ``layers.native_bn.train_call``, two C++ calls in place of XLA's ten-odd kernels, where the
  kernels are built (JAX on a CPU) and the caller asks for it (``native_bn``). Measured on 2
  cores (docs/performance.md), step time with the kernels ÷ with XLA's BN: 3 seeds together,
  LeNet 0.65-0.67, the deep MLP 0.93, bn-placement's BN arms 0.88-1.05 (three runs); one seed,
  the study CNN 0.84-0.92 but the MLPs 1.07-1.08 (there XLA, without YNNPACK, fuses BN into the
  loops around it). So ``multiseed`` asks for it for several seeds or a conv model.

Any other model gets its plain ``stateless_call``.

The pattern: a ``keras.Sequential`` whose layers before the BN have no weights (Flatten, Reshape),
so the BN's input is data and needs no gradient; the BN (Keras's or bnlab's, any variant) is
trainable, normalizes the last axis, and has both γ and β; the next layer is a
``keras.layers.Dense`` in float32, neither quantized nor with LoRA.
"""

import keras

from bnlab.layers import BatchNorm
from bnlab.layers import native_bn as kernels
from bnlab.layers.folded_dense import folded_dense

ENABLED = True  # bench/input_bn.py turns it off to time the model's own call beside the fold
NATIVE_BN = True  # and this, to time the fold with XLA's BN beside the C++ kernels'


def input_pair(model):
    """(BN, Dense) at the start of ``model`` that the fold applies to, or None."""
    if not isinstance(model, keras.Sequential):
        return None
    layers = model.layers
    first = next((i for i, layer in enumerate(layers) if layer.weights), None)
    if first is None or first + 1 >= len(layers):
        return None
    norm, dense = layers[first], layers[first + 1]
    foldable_norm = (isinstance(norm, (keras.layers.BatchNormalization, BatchNorm))
                     and norm.trainable and norm.center and norm.scale
                     and norm.axis in (-1, len(norm.input.shape) - 1))
    foldable_dense = (type(dense) is keras.layers.Dense and dense.trainable
                      and not dense.lora_enabled
                      and dense.dtype_policy.quantization_mode is None
                      and dense.compute_dtype == norm.compute_dtype == "float32")
    return (norm, dense) if foldable_norm and foldable_dense else None


def _has_batch_norm(model):
    return any(isinstance(layer, (keras.layers.BatchNormalization, BatchNorm))
               for layer in model.layers)


def training_call(model, native_bn=True):
    """f(trainable, non_trainable, x) -> (outputs, non_trainable'): ``model.stateless_call`` in
    training mode, with the input BN and its Dense folded where ``input_pair`` finds them and,
    with ``native_bn``, the plain BN layers by the C++ kernels (the module docstring)."""
    native_bn = native_bn and NATIVE_BN
    pair = input_pair(model) if ENABLED else None
    if pair is None and not (ENABLED and native_bn and isinstance(model, keras.Sequential)
                             and _has_batch_norm(model)):
        return lambda trainable, non_trainable, x: model.stateless_call(
            trainable, non_trainable, x, training=True)
    norm, dense = pair or (None, None)
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}

    def call(trainable, non_trainable, x):
        mapping = [*zip(model.trainable_variables, trainable),
                   *zip(model.non_trainable_variables, non_trainable)]
        if norm is not None:  # the BN gives z = x̂ with γ = 1 and β = 0; the fold applies them
            gamma, beta = (trainable[position[id(v)]] for v in (norm.gamma, norm.beta))
            mapping[position[id(norm.gamma)]] = (norm.gamma, keras.ops.ones_like(gamma))
            mapping[position[id(norm.beta)]] = (norm.beta, keras.ops.zeros_like(beta))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            h = x
            for layer in model.layers:
                if layer is dense:
                    h = folded_dense(h, gamma, beta, dense.kernel.value,
                                     dense.bias.value if dense.use_bias else None)
                    h = dense.activation(h) if dense.activation is not None else h
                elif native_bn and kernels.applies(layer, h):
                    h = kernels.train_call(layer, h)
                else:
                    h = layer(h, training=True)
            updated = [scope.get_current_value(v) for v in model.non_trainable_variables]
        return h, updated

    return call

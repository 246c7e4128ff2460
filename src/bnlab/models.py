"""The seed notebooks' architectures, as plain Keras ``Sequential`` models.

    build(name, norm=..., placement=..., ...) -> keras.Sequential

``name``       ``"mlp"`` (seeds 000, 004), ``"deep-mlp"`` (seed 002), ``"lenet"`` (seed 001),
               ``"deep-cnn"`` (seed 003).
``norm``       ``"none"``, ``"keras"`` (``keras.layers.BatchNormalization``) or ``"scratch"``
               (``bnlab.layers.BatchNorm``).
``placement``  ``"after"`` the activation (Dense(activation) → BN) or ``"before"`` it
               (Dense(use_bias=False) → BN → Activation), as seeds 000 and 004 compare them.

Convolutions and max pooling are ``bnlab.layers.fast_conv``' ``Conv2D`` and ``MaxPooling2D``: Keras's
layers, with the same weights and outputs, whose gradients run faster on JAX on the CPU.

Each builder follows its seed line by line; where a seed is ambiguous or wrong, the docstring says
what was chosen. The models end in the seed's own output (softmax probabilities, sigmoid
"probabilities" for LeNet, logits for the deep CNN); ``LOSSES`` names the loss that goes with each.
"""

import math

import keras

from bnlab.layers.fast_conv import Conv2D, MaxPooling2D
from bnlab.layers import BatchNorm

NORMS = ("none", "keras", "scratch")
PLACEMENTS = ("after", "before")
INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10

# The loss each model's output is made for: Keras's name for the loss and whether labels are one-hot.
LOSSES = {
    "mlp": "sparse_categorical_crossentropy",
    "deep-mlp": "sparse_categorical_crossentropy",
    "lenet": "sparse_categorical_crossentropy",
    "deep-cnn": "sigmoid_cross_entropy",  # seed 003: sigmoid cross-entropy on one-hot labels
}


def build(name, *, norm="keras", placement="after", activation=None, momentum=0.99,
          epsilon=1e-3, seed=None):
    """Build one of the seed architectures; see the module docstring for the arguments.

    ``activation`` overrides the model's own (seed 000's BN-before MLP uses ``"elu"``);
    ``momentum`` and ``epsilon`` go to every BN layer (seed 001's custom layer: 0.9 and 1e-5);
    ``seed`` seeds the weight initializers, so the same seed builds the same weights.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(BUILDERS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    make_norm = _norm_factory(norm, momentum, epsilon)
    return BUILDERS[name](make_norm, placement, activation)


def _norm_factory(norm, momentum, epsilon):
    """A function returning a fresh BN layer of the chosen kind, or None for norm="none"."""
    if norm == "none":
        return None
    layer_class = BatchNorm if norm == "scratch" else keras.layers.BatchNormalization
    return lambda: layer_class(momentum=momentum, epsilon=epsilon)


def _mlp(make_norm, placement, activation):
    """Seeds 000/004: Flatten → 300 → 100 → softmax 10 on 28×28 Fashion-MNIST.

    norm="none" is seed 004's baseline: he_normal weights and LeakyReLU. With BN there is an input
    BN on the 784 pixels (4 × 784 = 3,136 parameters), then per hidden layer either
    Dense(relu) → BN ("after") or Dense(use_bias=False) → BN → Activation ("before"; relu in
    seed 004, elu in seed 000). Seed 000's BN-before model ends in a Dense(10) without softmax,
    which its sparse-categorical loss then reads as probabilities; we use seed 004's softmax.
    """
    layers = [keras.Input(INPUT_SHAPE), keras.layers.Flatten()]
    if make_norm is None:
        for units in (300, 100):
            layers += [keras.layers.Dense(units, kernel_initializer="he_normal"),
                       keras.layers.LeakyReLU() if activation is None
                       else keras.layers.Activation(activation)]
    else:
        activation = activation or "relu"
        layers.append(make_norm())
        for units in (300, 100):
            layers += _dense_norm_block(units, make_norm, placement, activation, bias_before=False)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=_model_name("mlp", make_norm, placement))


def _deep_mlp(make_norm, placement, activation):
    """Seed 002: Flatten → 20 × (Dense 100 relu → BN) → softmax 10; 279,410 parameters with BN.

    "before" is the seed's commented-out second choice: Dense(100) → BN → Activation("relu"),
    keeping the Dense bias as the seed writes it.
    """
    activation = activation or "relu"
    layers = [keras.Input(INPUT_SHAPE), keras.layers.Flatten()]
    for _ in range(20):
        if make_norm is None:
            layers.append(keras.layers.Dense(100, activation=activation))
        else:
            layers += _dense_norm_block(100, make_norm, placement, activation, bias_before=True)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=_model_name("deep_mlp", make_norm, placement))


def _lenet(make_norm, placement, activation):
    """Seed 001: LeNet-5 with sigmoid, BN after each conv/dense and before its activation.

    Conv 6@5×5 → BN → sigmoid → maxpool 2; Conv 16@5×5 → BN → sigmoid → maxpool 2; Dense 120 →
    BN → sigmoid; Dense 84 → BN → sigmoid; Dense 10 with sigmoid, as the seed writes it (Keras's
    sparse categorical cross-entropy then normalizes the ten sigmoids to sum to one).
    ``placement`` is not used: the seed places BN only before the activation.
    """
    activation = activation or "sigmoid"
    layers = [keras.Input(INPUT_SHAPE + (1,))]
    for filters, after_pooling in ((6, False), (16, True)):
        layers.append(Conv2D(filters, 5, input_gradient="scatter" if after_pooling else "sum"))
        if make_norm is not None:
            layers.append(make_norm())
        layers += [keras.layers.Activation(activation), MaxPooling2D(2, 2)]
    layers.append(keras.layers.Flatten())
    for units in (120, 84):
        layers.append(keras.layers.Dense(units))
        if make_norm is not None:
            layers.append(make_norm())
        layers.append(keras.layers.Activation(activation))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="sigmoid"))
    return keras.Sequential(layers, name=_model_name("lenet", make_norm, None))


def _deep_cnn(make_norm, placement, activation):
    """Seed 003: 19 conv layers (layer i: 4·i filters, 3×3, stride 2 when i % 3 == 0, same padding),
    Dense 100, then 10 logits. Without BN: bias and relu. With BN: no bias → BN → relu.
    ``placement`` is not used: the seed places BN only before the activation.
    """
    activation = activation or "relu"
    use_bias = make_norm is None
    layers = [keras.Input(INPUT_SHAPE + (1,))]
    for i in range(1, 20):
        strides = 2 if i % 3 == 0 else 1
        layers.append(Conv2D(4 * i, 3, strides=strides, padding="same", use_bias=use_bias))
        if make_norm is not None:
            layers.append(make_norm())
        layers.append(keras.layers.Activation(activation))
    layers += [keras.layers.Flatten(), keras.layers.Dense(100, use_bias=use_bias)]
    if make_norm is not None:
        layers.append(make_norm())
    layers += [keras.layers.Activation(activation), keras.layers.Dense(NUM_CLASSES)]
    return keras.Sequential(layers, name=_model_name("deep_cnn", make_norm, None))


def _dense_norm_block(units, make_norm, placement, activation, bias_before):
    if placement == "after":
        return [keras.layers.Dense(units, activation=activation), make_norm()]
    return [keras.layers.Dense(units, use_bias=bias_before), make_norm(),
            keras.layers.Activation(activation)]


def _model_name(base, make_norm, placement):
    if make_norm is None:
        return base
    return f"{base}_bn_{placement}" if placement else f"{base}_bn"


def count_params(model):
    """(total, trainable, non-trainable) parameter counts, as model.summary() prints them."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return trainable + non_trainable, trainable, non_trainable


BUILDERS = {"mlp": _mlp, "deep-mlp": _deep_mlp, "lenet": _lenet, "deep-cnn": _deep_cnn}

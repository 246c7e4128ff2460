"""The seed notebooks' architectures and the study CNN, as plain Keras ``Sequential`` models.

    build(name, norm=..., placement=..., norm_options={...}, ...) -> keras.Sequential

``name``       ``"mlp"`` (seeds 000, 004), ``"deep-mlp"`` (seed 002), ``"lenet"`` (seed 001),
               ``"deep-cnn"`` (seed 003), ``"study-cnn"`` (the batch-size study's small CNN),
               ``"sigmoid-mlp"`` (the ioffe-fig1 study's net), ``"relu-mlp"`` (the depth-at-init
               study's net, ``depth`` hidden layers of ``units``: ``SIZED``), ``"dropout-mlp"``
               (the dropout-variance-shift study's net).
``norm``       the normalization after each hidden layer (``NORMS``):

    none     no normalization (the seeds' baselines)
    keras    ``keras.layers.BatchNormalization``
    scratch  ``bnlab.layers.BatchNorm``, the from-scratch BN
    renorm   ``bnlab.layers.BatchNorm(renorm=True)``: Batch Renormalization (Ioffe, 2017)
    ghost    ``bnlab.layers.BatchNorm(virtual_batch_size=k)``: Ghost BN, statistics per group of
             k examples (default k = 8, ``GHOST_VIRTUAL_BATCH_SIZE``; the last group is smaller
             when k does not divide the batch)
    group    ``keras.layers.GroupNormalization`` (Wu & He, 2018): per example, statistics over
             the spatial positions and the C/G channels of each of G groups. Default G: the
             largest divisor of the layer's C channels that is at most 32 (the paper's G) and
             leaves at least 2 channels per group (so GN never becomes instance norm); G = 1
             (one group: layer norm with per-channel γ, β) when C is 1 or a prime.
    layer    ``keras.layers.LayerNormalization`` (Ba et al., 2016): per example, statistics over
             all of a layer's units (H, W and C for a conv layer), with one γ and β per unit as
             Keras has them. (The GN paper's "LN", with one γ, β per channel, is
             ``norm="group", norm_options={"groups": 1}``.)

``placement``  ``"after"`` the activation (Dense(activation) → norm) or ``"before"`` it
               (Dense(use_bias=False) → norm → Activation), as seeds 000 and 004 compare them;
               ``None`` (the default) is the model's own: after in the MLPs, before in the CNNs.
``norm_options``  the norm's own arguments, checked when the model is built (``NORM_OPTIONS``):
               ``momentum``, ``epsilon`` (BN kinds), ``renorm_clipping``, ``renorm_momentum``,
               ``renorm_relaxation`` (renorm's schedule), ``virtual_batch_size`` (ghost, and
               renorm over groups), ``groups`` (group), ``epsilon`` (group, layer). ``momentum=``/``epsilon=`` given to ``build`` itself are shorthands for them.

The literature studies' features (``FEATURES``: which models take each; a ValueError otherwise):

``train``      what trains: ``"all"`` (default); ``"norm"``, only the norm layers' γ and β, every
               other weight frozen at its initial value (Frankle et al. 2021); ``"norm+head"``,
               γ, β and the last Dense layer; ``"two-per-channel"``, the control for ``"norm"``:
               two random kernel entries per conv output channel (``ChannelTunedConv2D``), as
               many parameters as γ and β, and nothing else (study CNN).
``bn_mode``    ``"train"`` (default); ``"frozen"``, FrozenBN: Keras's ``trainable=False``,
               moving statistics and fixed γ, β; ``"moving"``, moving statistics, γ and β
               trained (``MovingStatisticsBN``, norm ``"scratch"``).
``width``      the study CNN's channels times this (16w, 32w, 64w; default 1).
``dropout``    the dropout MLP's dropout (Li et al. 2019): ``"before-bn"``, Dropout in front of
               every hidden Dense → BN but the first; ``"after-bn"``, one Dropout after the last
               BN block, before the classifier; ``dropout_rate`` (default 0.5).

Convolutions and max pooling are ``bnlab.layers.fast_conv``' ``Conv2D`` and ``MaxPooling2D``: Keras's
layers, with the same weights and outputs, whose gradients run faster on JAX on the CPU.

Each seed builder follows its seed line by line; where a seed is ambiguous or wrong, the docstring
says what was chosen. The models end in the seed's own output (softmax probabilities, sigmoid
"probabilities" for LeNet, logits for the deep CNN); ``LOSSES`` names the loss that goes with each.
"""

import math

import keras

from bnlab.errors import UserError
from bnlab.layers import BatchNorm, ChannelTunedConv2D, MovingStatisticsBN, ghost, renorm
from bnlab.layers.fast_conv import Conv2D, MaxPooling2D
from bnlab.layers.noise import ChannelNoise
from bnlab.seeding import set_seed

NORMS = ("none", "keras", "scratch", "renorm", "ghost", "group", "layer")
BATCH_NORMS = ("keras", "scratch", "renorm", "ghost")  # those with moving statistics
# The arguments each norm takes in norm_options.
NORM_OPTIONS = {
    "none": (),
    "keras": ("momentum", "epsilon"),
    "scratch": ("momentum", "epsilon"),
    "renorm": ("momentum", "epsilon", "renorm_clipping", "renorm_momentum", "renorm_relaxation",
               "virtual_batch_size"),
    "ghost": ("momentum", "epsilon", "virtual_batch_size"),
    "group": ("groups", "epsilon"),
    "layer": ("epsilon",),
}
GHOST_VIRTUAL_BATCH_SIZE = 8
MAX_GROUPS = 32
PLACEMENTS = ("after", "before")
TRAIN = ("all", "norm", "norm+head", "two-per-channel")
BN_MODES = ("train", "frozen", "moving")
DROPOUTS = ("before-bn", "after-bn")
# The features of build(**features) (see the module docstring), the models that take each
# (None: every model), and the default that changes nothing.
FEATURES = {"train": (None, "all"), "bn_mode": (None, "train"), "width": (("study-cnn",), 1),
            "noise": (("study-cnn",), None),
            "dropout": (("dropout-mlp",), "before-bn"), "dropout_rate": (("dropout-mlp",), 0.5)}
INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10

# The loss each model's output is made for: Keras's name for the loss and whether labels are one-hot.
LOSSES = {
    "mlp": "sparse_categorical_crossentropy",
    "deep-mlp": "sparse_categorical_crossentropy",
    "lenet": "sparse_categorical_crossentropy",
    "deep-cnn": "sigmoid_cross_entropy",  # seed 003: sigmoid cross-entropy on one-hot labels
    "study-cnn": "sparse_categorical_crossentropy",
    "sigmoid-mlp": "sparse_categorical_crossentropy",
    "relu-mlp": "sparse_categorical_crossentropy",
    "dropout-mlp": "sparse_categorical_crossentropy",
}
# Where each model puts the norm when placement=None: the seed's own choice.
OWN_PLACEMENT = {"mlp": "after", "deep-mlp": "after", "lenet": "before", "deep-cnn": "before",
                 "study-cnn": "before", "sigmoid-mlp": "before", "relu-mlp": "before",
                 "dropout-mlp": "before"}
# The models built at any depth and width: build(name, depth=, units=) (their defaults).
SIZED = {"relu-mlp": {"depth": 20, "units": 256}}


# ``init`` of the sigmoid MLP: Keras's default, or Ioffe & Szegedy's "small random Gaussian"
INITS = {"glorot": "glorot_uniform", "gaussian": {"class_name": "RandomNormal",
                                                  "config": {"stddev": 0.01}}}


def build(name, *, norm="keras", placement=None, activation=None, momentum=None, epsilon=None,
          norm_options=None, seed=None, init=None, depth=None, units=None, **features):
    """Build one of the models; see the module docstring for the arguments.

    ``activation`` overrides the model's own (seed 000's BN-before MLP uses ``"elu"``);
    ``momentum`` and ``epsilon`` go to every norm layer that takes them (seed 001's custom
    layer: 0.9 and 1e-5; Keras's defaults 0.99 and 1e-3 otherwise); ``seed`` seeds the weight
    initializers, so the same seed builds the same weights. ``init`` (the sigmoid MLP only):
    its Dense kernels' initializer, ``INITS``: "glorot" (Keras's default) or "gaussian"
    (N(0, 0.01²), the paper's "small random Gaussian"). ``depth`` and ``units``: the size of
    a ``SIZED`` model (hidden layers, units per layer).
    """
    if name not in BUILDERS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(BUILDERS)}")
    if norm not in NORMS:
        raise UserError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if placement is not None and placement not in PLACEMENTS:
        raise UserError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    options = check_norm_options(norm, momentum, epsilon, norm_options)
    if init is not None and (name != "sigmoid-mlp" or init not in INITS):
        raise ValueError(f"init {init!r}: only the sigmoid-mlp takes one, among "
                         f"{', '.join(INITS)}")
    sizes = _check_sizes(name, depth=depth, units=units)
    features = check_features(name, norm, features)
    if seed is not None:
        set_seed(int(seed))
    norms = _Norms(norm, options, moving=features["bn_mode"] == "moving")
    own = {k: v for k, v in features.items() if FEATURES[k][0] is not None}
    if name == "study-cnn":
        own["tuned"] = features["train"] == "two-per-channel"
        if own["noise"] is not None:  # its own seed: the weights stay those of the same seed
            own["noise"] = {**own["noise"], "seed": seed}
    if init:
        own["init"] = INITS[init]
    model = BUILDERS[name](norms if norm != "none" else None,
                           placement or OWN_PLACEMENT[name], activation, **sizes, **own)
    norms.check(name)
    _set_trainable(model, features["train"], features["bn_mode"])
    return model


def _check_sizes(name, **sizes):
    given = {k: v for k, v in sizes.items() if v is not None}
    if name not in SIZED:
        if given:
            raise UserError(f"model {name!r} has a fixed size; depth and units are for "
                             f"{', '.join(SIZED)}")
        return {}
    for key, value in given.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{key} must be a positive int, got {value!r}")
    return {**SIZED[name], **given}


def check_features(name, norm, features):
    """``features`` with the defaults filled in, each checked against the model and norm."""
    for key in features:
        if key not in FEATURES:
            raise ValueError(f"unknown model feature {key!r}; known: {', '.join(FEATURES)}")
        models = FEATURES[key][0]
        if models is not None and name not in models:
            raise ValueError(f"model feature {key!r} is for {', '.join(models)}, not {name!r}")
    features = {key: features.get(key, default) for key, (models, default) in FEATURES.items()
                if models is None or name in models}
    for key, allowed in (("train", TRAIN), ("bn_mode", BN_MODES), ("dropout", DROPOUTS)):
        if key in features and features[key] not in allowed:
            raise ValueError(f"unknown {key} {features[key]!r}; choose one of "
                             f"{', '.join(allowed)}")
    if features["train"] == "two-per-channel" and name != "study-cnn":
        raise ValueError("train='two-per-channel' is for the study-cnn only")
    if features["bn_mode"] == "moving" and norm != "scratch":
        raise ValueError("bn_mode='moving' needs norm='scratch' (bnlab's BatchNorm)")
    if features["bn_mode"] != "train" and norm not in BATCH_NORMS:
        raise ValueError(f"bn_mode={features['bn_mode']!r} needs a BN norm, not {norm!r}")
    width = features.get("width", 1)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    noise = features.get("noise")
    if noise is not None and (not isinstance(noise, dict)
                              or set(noise) != {"scale_std", "shift_std"}):
        raise ValueError(f"noise must be a dict of scale_std and shift_std, got {noise!r}")
    rate = features.get("dropout_rate", 0.5)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {rate!r}")
    return features


NORM_LAYERS = (keras.layers.BatchNormalization, BatchNorm, keras.layers.GroupNormalization,
               keras.layers.LayerNormalization)


def _set_trainable(model, train, bn_mode):
    """Freeze what ``train`` and ``bn_mode`` leave out (their docstring)."""
    norms = [layer for layer in model.layers if isinstance(layer, NORM_LAYERS)]
    if train in ("norm", "norm+head"):
        head = model.layers[-1] if train == "norm+head" else None
        for layer in model.layers:
            if layer not in norms and layer is not head:
                layer.trainable = False
    elif train == "two-per-channel":  # the tuned convs freeze their own kernels
        for layer in model.layers:
            if not isinstance(layer, ChannelTunedConv2D):
                layer.trainable = False
    if bn_mode == "frozen":
        for layer in norms:
            layer.trainable = False


def check_norm_options(norm, momentum=None, epsilon=None, norm_options=None):
    """The norm's options: ``norm_options`` with the ``momentum``/``epsilon`` shorthands merged,
    each checked against what the norm takes."""
    options = dict(norm_options or {})
    for key, value in (("momentum", momentum), ("epsilon", epsilon)):
        if value is not None:
            options.setdefault(key, value)
    allowed = NORM_OPTIONS[norm]
    for key in options:
        if key not in allowed:
            raise UserError(f"norm {norm!r} takes no option {key!r}; its norm_options: "
                             f"{', '.join(allowed) or 'none'}")
    if "renorm_clipping" in options:
        renorm.check_clipping(options["renorm_clipping"])
    if "renorm_relaxation" in options:
        renorm.check_relaxation(options["renorm_relaxation"], options.get("renorm_clipping"))
    if "virtual_batch_size" in options:
        ghost.check_size(options["virtual_batch_size"])
    groups = options.get("groups", 1)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise UserError(f"norm_options groups must be a positive int, got {groups!r}")
    return options


class _Norms:
    """Makes a fresh norm layer for a layer of ``channels`` units (``spatial``: a conv layer's
    (N, H, W, C) output, else (N, C)), with the norm's options; a GroupNormalization whose
    ``groups`` does not divide its channels is recorded, and ``check`` names them all."""

    def __init__(self, norm, options, moving=False):
        self.norm, self.options, self.moving = norm, options, moving
        self.channels, self.undivided = [], []

    def __call__(self, channels, spatial=False):
        self.channels.append(channels)
        options = self.options
        if self.norm == "keras":
            return keras.layers.BatchNormalization(**options)
        if self.norm == "scratch":
            return MovingStatisticsBN(**options) if self.moving else BatchNorm(**options)
        if self.norm == "renorm":
            return BatchNorm(renorm=True, **options)
        if self.norm == "ghost":
            return BatchNorm(**{"virtual_batch_size": GHOST_VIRTUAL_BATCH_SIZE, **options})
        if self.norm == "layer":
            return keras.layers.LayerNormalization(axis=(-3, -2, -1) if spatial else -1,
                                                   **options)
        groups = options.get("groups", default_groups(channels))
        if channels % groups:
            self.undivided.append(channels)
            return keras.layers.Identity()  # check() raises once every layer is seen
        return keras.layers.GroupNormalization(**{**options, "groups": groups})

    def check(self, model_name):
        if self.undivided:
            raise UserError(
                f"norm_options groups={self.options['groups']} must divide the channels of every "
                f"norm layer of {model_name}; its channel counts are "
                f"{', '.join(map(str, self.channels))}, and {self.options['groups']} does not "
                f"divide {', '.join(map(str, sorted(set(self.undivided))))}")


def default_groups(channels):
    """GroupNorm's default G for C channels: the largest divisor of C with G ≤ 32 and C/G ≥ 2;
    1 when there is none (C = 1 or prime)."""
    return max((g for g in range(1, MAX_GROUPS + 1) if channels % g == 0 and channels // g >= 2),
               default=1)


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
        layers.append(make_norm(math.prod(INPUT_SHAPE)))
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
    The seed's placement is "before"; "after" puts each norm after its sigmoid (before pooling).
    The convolutions and Dense layers keep their bias, as the seed writes them.
    """
    activation = activation or "sigmoid"
    layers = [keras.Input(INPUT_SHAPE + (1,))]
    for filters, after_pooling in ((6, False), (16, True)):
        conv = Conv2D(filters, 5, input_gradient="scatter" if after_pooling else "sum")
        layers += _norm_block(conv, filters, make_norm, placement, activation, spatial=True)
        layers.append(MaxPooling2D(2, 2))
    layers.append(keras.layers.Flatten())
    for units in (120, 84):
        layers += _norm_block(keras.layers.Dense(units), units, make_norm, placement, activation)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="sigmoid"))
    return keras.Sequential(layers, name=_model_name("lenet", make_norm, placement))


def _deep_cnn(make_norm, placement, activation):
    """Seed 003: 19 conv layers (layer i: 4·i filters, 3×3, stride 2 when i % 3 == 0, same padding),
    Dense 100, then 10 logits. Without BN: bias and relu. With BN: no bias → BN → relu (the
    seed's placement, "before"); "after": bias and relu → norm.
    """
    activation = activation or "relu"
    use_bias = make_norm is None or placement == "after"
    layers = [keras.Input(INPUT_SHAPE + (1,))]
    for i in range(1, 20):
        strides = 2 if i % 3 == 0 else 1
        conv = Conv2D(4 * i, 3, strides=strides, padding="same", use_bias=use_bias)
        layers += _norm_block(conv, 4 * i, make_norm, placement, activation, spatial=True)
    layers.append(keras.layers.Flatten())
    layers += _norm_block(keras.layers.Dense(100, use_bias=use_bias), 100, make_norm, placement,
                          activation)
    layers.append(keras.layers.Dense(NUM_CLASSES))
    return keras.Sequential(layers, name=_model_name("deep_cnn", make_norm, placement))


def _study_cnn(make_norm, placement, activation, width=1, tuned=False, noise=None):
    """The batch-size study's small CNN (no seed has it): 28×28×1 → Conv 16@3×3 → norm
    → relu → maxpool 2 → Conv 32@3×3 → norm → relu → maxpool 2 → Conv 64@3×3 → norm → relu →
    global average pooling → Dense 10 softmax (shapes 28×28×16, 14×14×32, 7×7×64, 64, 10; "same"
    padding). Small enough for batches of 2 on a CPU, with a norm after every conv and no Dense
    hidden layer, so that the norm under study is the only one in the net. Convolutions carry a
    bias only where no norm follows them directly (norm "none", or placement "after").
    ``width`` multiplies the channels; ``tuned``: the convs are ``ChannelTunedConv2D`` (two
    trainable kernel entries per channel, its random positions fixed by the layer's index).
    ``noise``: {"scale_std", "shift_std"} puts a ``ChannelNoise`` right after every norm (the
    smoothness study's "noisy BN": a random scale and shift a channel, new every training step).
    """
    activation = activation or "relu"
    use_bias = make_norm is None or placement == "after"
    layers = [keras.Input(INPUT_SHAPE + (1,))]
    for i, (filters, after_pooling) in enumerate(((16, False), (32, True), (64, True))):
        if after_pooling:
            layers.append(MaxPooling2D(2, 2))
        tuning = {"tuned": 2, "tuned_seed": i} if tuned else {}
        channels = filters * width
        conv = (ChannelTunedConv2D if tuned else Conv2D)(
            channels, 3, padding="same", use_bias=use_bias,
            input_gradient="scatter" if after_pooling else "sum", **tuning)
        block = _norm_block(conv, channels, make_norm, placement, activation, spatial=True)
        if noise is not None:
            if make_norm is None:
                raise ValueError("noise follows a norm layer: it needs a norm other than 'none'")
            layer_seed = None if noise.get("seed") is None else 1000 * int(noise["seed"]) + i
            block.insert(2 if placement != "after" else 3,
                         ChannelNoise(noise["scale_std"], noise["shift_std"], seed=layer_seed))
        layers += block
    layers += [keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(NUM_CLASSES, activation="softmax")]
    return keras.Sequential(layers, name=_model_name("study_cnn", make_norm, placement))


def _sigmoid_mlp(make_norm, placement, activation, init="glorot_uniform"):
    """Ioffe & Szegedy (2015) §4.1's net: Flatten → 3 × (Dense 100 → norm → sigmoid) → Dense 10
    softmax. The Dense layers keep no bias where a norm follows them directly (placement
    "before", the paper's)."""
    activation = activation or "sigmoid"
    use_bias = make_norm is None or placement == "after"
    layers = [keras.Input(INPUT_SHAPE), keras.layers.Flatten()]
    for _ in range(3):
        dense = keras.layers.Dense(100, use_bias=use_bias,
                                   kernel_initializer=keras.initializers.get(init))
        layers += _norm_block(dense, 100, make_norm, placement, activation)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax",
                                     kernel_initializer=keras.initializers.get(init)))
    return keras.Sequential(layers, name=_model_name("sigmoid_mlp", make_norm, placement))


def _dropout_mlp(make_norm, placement, activation, dropout="before-bn", dropout_rate=0.5):
    """Li et al. (2019)'s setting: Flatten → 4 × (Dense 256 → norm → relu) → Dense 10 softmax,
    the Dense layers without bias where a norm follows. ``dropout="before-bn"``: Dropout in
    front of the 2nd, 3rd and 4th Dense (so BN sees dropout's training-time variance);
    ``"after-bn"``: one Dropout after the last block only, where no BN follows it."""
    activation = activation or "relu"
    use_bias = make_norm is None or placement == "after"
    layers = [keras.Input(INPUT_SHAPE), keras.layers.Flatten()]
    for i in range(4):
        if dropout == "before-bn" and i > 0:
            layers.append(keras.layers.Dropout(dropout_rate))
        layers += _norm_block(keras.layers.Dense(256, use_bias=use_bias), 256, make_norm,
                              placement, activation)
    if dropout == "after-bn":
        layers.append(keras.layers.Dropout(dropout_rate))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=_model_name("dropout_mlp", make_norm, placement))


def _relu_mlp(make_norm, placement, activation, depth, units):
    """Yang et al. (2019)'s fully connected net: Flatten → depth × (Dense units → norm → relu)
    → Dense 10 softmax, no skip connections, He-normal kernels (the variance that keeps a ReLU
    net without BN at the edge of chaos, so its gradients neither vanish nor explode with depth;
    BN makes the kernels' scale irrelevant). No bias where a norm follows directly."""
    activation = activation or "relu"
    use_bias = make_norm is None or placement == "after"
    layers = [keras.Input(INPUT_SHAPE), keras.layers.Flatten()]
    for _ in range(depth):
        dense = keras.layers.Dense(units, use_bias=use_bias, kernel_initializer="he_normal")
        layers += _norm_block(dense, units, make_norm, placement, activation)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name=_model_name("relu_mlp", make_norm, placement))


def _norm_block(layer, channels, make_norm, placement, activation, spatial=False):
    """A conv or Dense ``layer`` (no activation of its own) with its norm and activation: layer →
    activation without a norm; layer → norm → activation "before"; layer → activation → norm
    "after". ``channels``: the layer's output channels (units)."""
    if make_norm is None:
        return [layer, keras.layers.Activation(activation)]
    if placement == "after":
        return [layer, keras.layers.Activation(activation), make_norm(channels, spatial)]
    return [layer, make_norm(channels, spatial), keras.layers.Activation(activation)]


def _dense_norm_block(units, make_norm, placement, activation, bias_before):
    if placement == "after":
        return [keras.layers.Dense(units, activation=activation), make_norm(units)]
    return [keras.layers.Dense(units, use_bias=bias_before), make_norm(units),
            keras.layers.Activation(activation)]


def _model_name(base, make_norm, placement):
    if make_norm is None:
        return base
    kind = "bn" if make_norm.norm in BATCH_NORMS else make_norm.norm
    return f"{base}_{kind}_{placement}"


def count_params(model):
    """(total, trainable, non-trainable) parameter counts, as model.summary() prints them."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return trainable + non_trainable, trainable, non_trainable


BUILDERS = {"mlp": _mlp, "deep-mlp": _deep_mlp, "lenet": _lenet, "deep-cnn": _deep_cnn,
            "study-cnn": _study_cnn, "sigmoid-mlp": _sigmoid_mlp, "relu-mlp": _relu_mlp,
            "dropout-mlp": _dropout_mlp}
CONVOLUTIONAL = ("lenet", "deep-cnn", "study-cnn")  # the models with convolutions

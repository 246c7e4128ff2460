"""The seed architectures: parameter counts as the seeds print them, layers, norms, seeding."""

import re

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab import models
from bnlab.layers import BatchNorm


# (model, build kwargs, total, non-trainable): the totals the seeds print, and the arithmetic of
# the others from their layer shapes.
COUNTS = [
    ("mlp", {"norm": "none"}, 266_610, 0),                                # seed 004 baseline
    ("mlp", {"norm": "keras", "placement": "after"}, 271_346, 2_368),     # seed 004 BN approach 1
    ("mlp", {"norm": "scratch", "placement": "after"}, 271_346, 2_368),
    ("mlp", {"norm": "keras", "placement": "before"}, 270_946, 2_368),    # seed 004 BN approach 2
    ("deep-mlp", {"norm": "keras"}, 279_410, 4_000),                      # seed 002
    ("deep-mlp", {"norm": "scratch"}, 279_410, 4_000),
    ("lenet", {"norm": "keras"}, 45_330, 452),
    ("lenet", {"norm": "none"}, 44_426, 0),
    ("deep-cnn", {"norm": "keras"}, 340_406, 1_720),
    ("deep-cnn", {"norm": "none"}, 337_826, 0),
]


@pytest.mark.parametrize("name,kwargs,total,non_trainable", COUNTS,
                         ids=[f"{c[0]}-{'-'.join(map(str, c[1].values()))}" for c in COUNTS])
def test_parameter_counts(name, kwargs, total, non_trainable):
    model = models.build(name, **kwargs)
    assert models.count_params(model) == (total, total - non_trainable, non_trainable)
    assert model.count_params() == total


def test_first_bn_of_the_mlp_has_4_x_784_parameters_and_keras_trainable_flags():
    model = models.build("mlp", norm="keras", placement="after")
    bn1 = model.layers[1]
    assert isinstance(bn1, keras.layers.BatchNormalization)
    assert bn1.count_params() == 3_136
    assert [(v.path.split("/")[-1], v.trainable) for v in bn1.variables] == [
        ("gamma", True), ("beta", True), ("moving_mean", False), ("moving_variance", False)]


@pytest.mark.parametrize("name", list(models.BUILDERS))
def test_scratch_norm_uses_bnlab_layer_everywhere(name):
    model = models.build(name, norm="scratch", momentum=0.9, epsilon=1e-5)
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert bns and not any(type(layer) is keras.layers.BatchNormalization for layer in model.layers)
    assert all(bn.momentum == 0.9 and bn.epsilon == 1e-5 for bn in bns)


def test_bn_before_drops_the_dense_bias_and_applies_the_activation_after_bn():
    model = models.build("mlp", norm="keras", placement="before", activation="elu")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "BatchNormalization", "Dense", "BatchNormalization", "Activation",
                     "Dense", "BatchNormalization", "Activation", "Dense"]
    assert model.layers[2].use_bias is False and model.layers[4].activation.__name__ == "elu"


def test_deep_cnn_strides_and_widths_follow_seed_003():
    model = models.build("deep-cnn", norm="none")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4 * i for i in range(1, 20)]
    assert [c.strides[0] for c in convs] == [2 if i % 3 == 0 else 1 for i in range(1, 20)]
    assert model.output_shape == (None, 10)


def test_same_seed_same_weights_other_seed_other_weights():
    a = models.build("mlp", norm="keras", seed=3).get_weights()
    b = models.build("mlp", norm="keras", seed=3).get_weights()
    c = models.build("mlp", norm="keras", seed=4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[4], c[4])


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "resnet"}, "unknown model"),
    ({"name": "mlp", "norm": "batch"}, "unknown norm 'batch'; choose one of none, keras, scratch, "
                                        "renorm, ghost, group, layer"),
    ({"name": "mlp", "norm": "layer", "norm_options": {"momentum": 0.9}},
     "norm 'layer' takes no option 'momentum'; its norm_options: epsilon"),
    ({"name": "mlp", "norm": "group", "momentum": 0.9}, "norm 'group' takes no option 'momentum'"),
    ({"name": "mlp", "norm": "none", "norm_options": {"epsilon": 1e-5}},
     "norm 'none' takes no option 'epsilon'; its norm_options: none"),
    ({"name": "lenet", "norm": "ghost", "norm_options": {"groups": 2}},
     "its norm_options: momentum, epsilon, virtual_batch_size"),
    ({"name": "lenet", "norm": "group", "norm_options": {"groups": 4}},
     "groups=4 must divide the channels of every norm layer of lenet; its channel counts are "
     "6, 16, 120, 84, and 4 does not divide 6"),
    ({"name": "lenet", "norm": "group", "norm_options": {"groups": 0}}, "groups must be a positive"),
    ({"name": "mlp", "norm": "renorm", "norm_options": {"renorm_clipping": {"rmax": 1, "x": 2}}},
     "renorm_clipping"),
    ({"name": "mlp", "placement": "middle"}, "unknown placement"),
])
def test_unknown_names_and_options(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=re.escape(match)):
        models.build(name, **kwargs)


# ----------------------------------------------------------------------------------------------
# every norm (issue 8 §4)

# Channels of the norm layers, and (for layer norm) the units of each normalized layer output.
LENET_CHANNELS = (6, 16, 120, 84)
LENET_UNITS = (24 * 24 * 6, 8 * 8 * 16, 120, 84)
STUDY_CHANNELS = (16, 32, 64)
STUDY_UNITS = (28 * 28 * 16, 14 * 14 * 32, 7 * 7 * 64)
NO_NORM = {"lenet": 44_426, "study-cnn": 23_946}
# Weights of the convolutions' and Dense layers' biases a norm "before" its activation drops.
STUDY_BIASES = sum(STUDY_CHANNELS)


@pytest.mark.parametrize("norm,per_channel_trainable,per_channel_fixed", [
    ("keras", 2, 2), ("scratch", 2, 2), ("ghost", 2, 2),
    ("renorm", 2, 5),  # + moving_stddev, renorm_mean, renorm_stddev, as Keras's renorm=True has
    ("group", 2, 0),   # γ, β per channel, no moving statistics
])
def test_per_channel_norms_parameter_counts(norm, per_channel_trainable, per_channel_fixed):
    lenet = models.build("lenet", norm=norm)  # LeNet keeps its biases under a norm
    study = models.build("study-cnn", norm=norm)  # the study CNN drops them ("before")
    for model, channels, base in ((lenet, LENET_CHANNELS, NO_NORM["lenet"]),
                                  (study, STUDY_CHANNELS, NO_NORM["study-cnn"] - STUDY_BIASES)):
        fixed = per_channel_fixed * sum(channels)
        trainable = base + per_channel_trainable * sum(channels)
        assert models.count_params(model) == (trainable + fixed, trainable, fixed)


def test_renorm_weights_are_keras_renorm_weights():
    model = models.build("mlp", norm="renorm", norm_options={"renorm_momentum": 0.9,
                                                             "renorm_clipping": {"rmax": 2.0}})
    ours = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(ours) == 3 and all(bn.renorm and bn.renorm_momentum == 0.9 for bn in ours)
    theirs = keras.layers.BatchNormalization(renorm=True)
    theirs.build((None, 784))
    assert ([(v.path.split("/")[-1], v.trainable) for v in ours[0].variables]
            == [(v.path.split("/")[-1], v.trainable) for v in theirs.variables])


def test_layer_norm_normalizes_each_layer_output_with_a_gain_and_bias_per_unit():
    model = models.build("lenet", norm="layer")
    lns = [layer for layer in model.layers if isinstance(layer, keras.layers.LayerNormalization)]
    assert [ln.count_params() for ln in lns] == [2 * u for u in LENET_UNITS]
    assert models.count_params(model) == (NO_NORM["lenet"] + 2 * sum(LENET_UNITS),) * 2 + (0,)
    x = np.random.default_rng(0).normal(3, 2, (2, 28, 28, 1)).astype("float32")
    first = keras.Sequential(model.layers[:2])(x)  # conv → LN: zero mean, unit variance per image
    np.testing.assert_allclose(np.mean(first, axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(np.var(first, axis=(1, 2, 3)), 1, atol=1e-2)


@pytest.mark.parametrize("channels,groups", [
    (1, 1), (6, 3), (7, 1), (16, 8), (32, 16), (64, 32), (84, 28), (100, 25), (120, 30),
    (784, 28), (2048, 32)])
def test_default_groups_rule(channels, groups):
    assert models.default_groups(channels) == groups
    assert channels % groups == 0 and groups <= 32 and (channels // groups >= 2 or groups == 1)


def test_group_norm_uses_the_default_rule_or_the_users_groups():
    default = models.build("lenet", norm="group")
    chosen = models.build("lenet", norm="group", norm_options={"groups": 2, "epsilon": 1e-5})
    kind = keras.layers.GroupNormalization
    assert [l.groups for l in default.layers if isinstance(l, kind)] == [3, 8, 30, 28]
    assert [(l.groups, l.epsilon) for l in chosen.layers if isinstance(l, kind)] == [(2, 1e-5)] * 4


def test_ghost_default_virtual_batch_and_options_reach_the_layer():
    default = models.build("mlp", norm="ghost")
    chosen = models.build("mlp", norm="ghost", momentum=0.9,
                          norm_options={"virtual_batch_size": 4, "epsilon": 1e-5})
    assert {bn.virtual_batch_size for bn in default.layers if isinstance(bn, BatchNorm)} == {8}
    assert {(bn.virtual_batch_size, bn.momentum, bn.epsilon) for bn in chosen.layers
            if isinstance(bn, BatchNorm)} == {(4, 0.9, 1e-5)}


@pytest.mark.parametrize("norm", models.NORMS)
@pytest.mark.parametrize("name", ["mlp", "lenet", "study-cnn"])
def test_every_norm_in_every_model_trains_one_step_in_its_other_placement(name, norm):
    """The model's own placement of every norm trains one step, and agrees with Keras's
    train_on_batch, in tests/test_multiseed.py::test_one_step_of_every_norm_together_equals_
    train_on_batch; here the other placement trains one step and predicts."""
    placement = next(p for p in models.PLACEMENTS if p != models.OWN_PLACEMENT[name])
    model = models.build(name, norm=norm, placement=placement, seed=1)
    shape = (8, 28, 28) + ((1,) if name != "mlp" else ())
    x = np.random.default_rng(0).random(shape, dtype="float32")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(x, np.arange(8) % 10)
    assert np.isfinite(loss) and model.predict(x, verbose=0).shape == (8, 10)


@pytest.mark.parametrize("name,kinds", [
    ("lenet", ["Conv2D", "Activation", "GroupNormalization", "MaxPooling2D"]),
    ("deep-cnn", ["Conv2D", "Activation", "GroupNormalization", "Conv2D"]),
])
def test_after_placement_puts_the_norm_after_the_activation_in_the_cnns(name, kinds):
    model = models.build(name, norm="group", placement="after")
    assert [type(layer).__name__ for layer in model.layers[:4]] == kinds
    assert model.layers[0].use_bias


def test_deep_cnn_every_norm_counts():
    """The 19-conv net with a norm "before" each relu (no biases): 860 channels + Dense 100."""
    channels = sum(4 * i for i in range(1, 20)) + 100
    assert models.count_params(models.build("deep-cnn", norm="group"))[1] == 340_406 - 2 * channels
    assert models.count_params(models.build("deep-cnn", norm="renorm"))[2] == 5 * channels


def test_study_cnn_shapes():
    model = models.build("study-cnn", norm="keras")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == list(STUDY_CHANNELS)
    assert [c.output.shape[1:] for c in convs] == [(28, 28, 16), (14, 14, 32), (7, 7, 64)]
    assert model.output_shape == (None, 10) and models.LOSSES["study-cnn"]


@pytest.mark.parametrize("name", sorted(models.BUILDERS))
def test_the_convolutional_models_are_those_with_a_conv_layer(name):
    """``models.CONVOLUTIONAL`` (which picks XLA's options and multiseed's conv path) names
    exactly the models that have a ``Conv2D``."""
    model = models.build(name, norm="none")
    has_conv = any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    assert (name in models.CONVOLUTIONAL) == has_conv

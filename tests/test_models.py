"""The seed architectures: parameter counts as the seeds print them, layers, norms, seeding."""

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
    ({"name": "mlp", "norm": "layer"}, "unknown norm"),
    ({"name": "mlp", "placement": "middle"}, "unknown placement"),
])
def test_unknown_names(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        models.build(name, **kwargs)

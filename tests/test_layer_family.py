"""The BN family in bnlab.layers.BatchNorm: renorm, masks, momentum=None, Ghost BN, replicas.

Renorm and masks are held against Keras's own layer (outputs, gradients, every moving statistic,
1e-5 relative in float32) on every backend; Ghost BN and momentum=None against bnlab.reference
(float64); cross-replica statistics (JAX) against one BN over the concatenated batch.
"""

import numpy as np
import pytest

import bnlab  # noqa: F401  (sets the default backend before Keras is imported)
import keras
from backend_utils import BACKEND, each_gradient, grads, to_numpy
from bnlab import reference
from bnlab.layers import BatchNorm
from test_layers import assert_close

pytestmark = pytest.mark.backend
gradient = each_gradient(__name__)  # every test on the autodiff and the closed-form gradient

only_jax = pytest.mark.skipif(BACKEND != "jax", reason="axis_name is JAX's mapped-axis name")

RENORM_NAMES = ["gamma", "beta", "moving_mean", "moving_variance", "moving_stddev",
                "renorm_mean", "renorm_stddev"]


def weights_by_name(layer):
    return {w.path.split("/")[-1]: to_numpy(w) for w in layer.weights}


def renorm_state(c, rng):
    """gamma, beta and the five moving statistics (renorm_stddev near 1)."""
    variance = rng.uniform(0.5, 2.0, c)
    return [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c), rng.normal(0, 0.3, c), variance,
            np.sqrt(variance), rng.normal(0, 0.3, c), rng.uniform(0.8, 1.2, c)]


def renorm_pair(shape, axis, state, **kwargs):
    layers = []
    for cls in (BatchNorm, keras.layers.BatchNormalization):
        layer = cls(axis=axis, renorm=True, **kwargs)
        layer.build(shape)
        layer.set_weights([w.astype("float32") for w in state])
        layers.append(layer)
    return layers


# Batches with std 3 and mean 2 against renorm_stddev ≈ 1 and renorm_mean ≈ 0: r ≈ 3, d ≈ 2.
BINDS = {"rmax": 1.5, "rmin": 0.8, "dmax": 0.5}
LOOSE = {"rmax": 100.0, "rmin": 0.01, "dmax": 100.0}


@pytest.mark.parametrize("clipping", [None, LOOSE, BINDS], ids=["unclipped", "loose", "binding"])
@pytest.mark.parametrize("shape,axis", [((16, 5), -1), ((4, 6, 3, 3), 1)], ids=["dense", "nchw"])
def test_renorm_matches_keras_over_several_steps(shape, axis, clipping):
    rng = np.random.default_rng(20)
    c = shape[axis]
    state = renorm_state(c, rng)
    ours, theirs = renorm_pair(shape, axis, state, renorm_clipping=clipping, momentum=0.9,
                               renorm_momentum=0.8)
    reduce = tuple(a for a in range(len(shape)) if a != axis % len(shape))
    for step in range(4):
        x = (rng.standard_normal(shape) * 3.0 + 2.0).astype("float32")
        if step == 0:  # the regime the test claims: r, d far from (1, 0), clipped or not
            r = np.sqrt(x.var(reduce) + 1e-3) / state[6]
            d = (x.mean(reduce) - state[5]) / state[6]
            assert (r > 1.5).all() and (np.abs(d) > 0.5).all()
            assert (r < 100).all() and (np.abs(d) < 100).all()
        assert_close(to_numpy(ours(x, training=True)), to_numpy(theirs(x, training=True)),
                     what=f"output at step {step}")
    r_ = rng.standard_normal(shape).astype("float32")
    dx, dw = grads(ours, x, r_, training=True)
    dx_k, dw_k = grads(theirs, x, r_, training=True)
    assert_close(dx, dx_k, what="dx")
    for name in ("gamma", "beta"):
        assert_close(dw[name], dw_k[name], what=f"d{name}")
    ours_w, theirs_w = weights_by_name(ours), weights_by_name(theirs)
    assert list(ours_w) == list(theirs_w) == RENORM_NAMES
    for name in RENORM_NAMES:
        assert_close(ours_w[name], theirs_w[name], what=name)
    assert_close(to_numpy(ours(x, training=False)), to_numpy(theirs(x, training=False)))


RELAXED = {"hold": 2, "rmax_at": 6, "dmax_at": 4}


@pytest.mark.backend
def test_renorm_relaxation_follows_the_reference_schedule_step_by_step():
    """``renorm_relaxation`` (beyond Keras): plain BN for ``hold`` steps, then rmax 1 → 3 and
    dmax 0 → 5 opened linearly, each step's output equal to bnlab.reference's renorm with the
    reference schedule's clipping at that step; the step counter is the layer's last weight."""
    rng = np.random.default_rng(3)
    shape, clipping = (8, 4), {"rmax": 3.0, "dmax": 5.0}
    layer = BatchNorm(renorm=True, renorm_clipping=clipping, renorm_relaxation=RELAXED,
                      momentum=0.9, renorm_momentum=0.8)
    layer.build(shape)
    assert [w.path.split("/")[-1] for w in layer.weights] == RENORM_NAMES + ["renorm_steps"]
    state = reference.renorm_state(np.zeros(4), np.ones(4))
    seen = []
    for step in range(8):
        x = (rng.standard_normal(shape) * 3.0 + 2.0).astype("float32")  # r, d far from (1, 0)
        at = reference.relaxed_clipping(step, **clipping, **RELAXED)
        want, state = reference.batch_renorm(x, np.ones(4), np.zeros(4), state, momentum=0.9,
                                             renorm_momentum=0.8, **at)
        assert_close(to_numpy(layer(x, training=True)), want, what=f"output at step {step}")
        seen.append(at)
        if step < RELAXED["hold"]:  # pure BN
            bn, _ = reference.forward(x, np.ones(4), np.zeros(4), training=True)
            assert_close(want, bn, what="BN while held")
    assert [a["rmax"] for a in seen] == pytest.approx([1, 1, 1, 1.5, 2, 2.5, 3, 3])
    assert [a["dmax"] for a in seen] == pytest.approx([0, 0, 0, 2.5, 5, 5, 5, 5])
    assert [a["rmin"] for a in seen] == pytest.approx([1, 1, 1, 1 / 1.5, 0.5, 0.4, 1 / 3, 1 / 3])
    assert int(to_numpy(layer.renorm_steps)) == 8
    layer(x, training=False)  # inference does not count a step
    assert int(to_numpy(layer.renorm_steps)) == 8
    clone = BatchNorm.from_config(layer.get_config())
    assert clone.renorm_relaxation == RELAXED


@pytest.mark.parametrize("kwargs,message", [
    ({"renorm_relaxation": RELAXED}, "needs renorm=True"),
    ({"renorm": True, "renorm_relaxation": RELAXED}, "give both"),
    ({"renorm": True, "renorm_clipping": {"rmax": 3.0, "dmax": 5.0},
      "renorm_relaxation": {"hold": 5, "rmax_at": 4, "dmax_at": 9}}, "hold < rmax_at"),
    ({"renorm": True, "renorm_clipping": {"rmax": 3.0, "dmax": 5.0},
      "renorm_relaxation": {"hold": 1}}, "the keys"),
])
def test_a_bad_renorm_relaxation_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm(**kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"renorm": True}], ids=["bn", "renorm"])
@pytest.mark.parametrize("shape", [(4, 6, 3), (3, 4, 2, 5)], ids=["sequence", "image"])
def test_mask_matches_keras(shape, kwargs):
    rng = np.random.default_rng(21)
    ours = BatchNorm(momentum=0.8, **kwargs)
    theirs = keras.layers.BatchNormalization(momentum=0.8, **kwargs)
    for step in range(3):
        x = (rng.standard_normal(shape) * 2 + 1).astype("float32")
        mask = rng.random(shape[:-1]) < 0.6
        y, y_k = ours(x, training=True, mask=mask), theirs(x, training=True, mask=mask)
        assert_close(to_numpy(y), to_numpy(y_k), what=f"output at step {step}")
    r = rng.standard_normal(shape).astype("float32")
    (dx, dw), (dx_k, dw_k) = (grads(layer, x, r, True, mask=mask) for layer in (ours, theirs))
    assert_close(dx, dx_k, what="dx")
    assert_close(dw["gamma"], dw_k["gamma"], what="dgamma")
    ours_w, theirs_w = weights_by_name(ours), weights_by_name(theirs)
    assert list(ours_w) == list(theirs_w)
    for name in ours_w:
        assert_close(ours_w[name], theirs_w[name], what=name)
    # the masked steps are left out: the statistics are those of the steps kept
    layer = BatchNorm(momentum=0.0)
    layer(x, training=True, mask=mask)
    kept = x[mask].astype(np.float64)
    assert_close(to_numpy(layer.moving_mean), kept.mean(0))
    assert_close(to_numpy(layer.moving_variance), kept.var(0))


def test_mask_of_the_wrong_rank():
    with pytest.raises(ValueError, match="one dimension less"):
        BatchNorm()(np.ones((4, 3, 2), "float32"), training=True, mask=np.ones((4,), bool))


def test_momentum_none_is_the_cumulative_average():
    rng = np.random.default_rng(22)
    layer = BatchNorm(momentum=None)
    means, variances = [], []
    mm, mv = np.zeros(3), np.ones(3)
    for count, n in enumerate((8, 5, 11, 6), start=1):
        x = (rng.standard_normal((n, 3)) * rng.uniform(1, 3) + rng.normal()).astype("float32")
        layer(x, training=True)
        means.append(x.astype(np.float64).mean(0))
        variances.append(x.astype(np.float64).var(0))
        _, mm, mv = reference.batch_norm(x.astype(np.float64), None, None, mm, mv,
                                         momentum=None, count=count)
    weights = weights_by_name(layer)
    assert list(weights) == ["gamma", "beta", "moving_mean", "moving_variance",
                             "num_batches_tracked"]
    assert int(weights["num_batches_tracked"]) == 4
    assert_close(weights["moving_mean"], np.mean(means, 0))
    assert_close(weights["moving_variance"], np.mean(variances, 0))
    assert_close(weights["moving_mean"], mm, what="moving_mean vs reference")
    assert_close(weights["moving_variance"], mv, what="moving_variance vs reference")
    assert [w.trainable for w in layer.weights] == [True, True, False, False, False]
    # inference and training=False leave the counter alone
    layer(x, training=False)
    assert int(to_numpy(layer.num_batches_tracked)) == 4
    assert not hasattr(BatchNorm(momentum=0.9), "num_batches_tracked")


@pytest.mark.parametrize("shape,axis,k", [((12, 4), -1, 4), ((6, 3, 2, 2), 1, 2),
                                          ((8, 2, 2, 3), -1, 8), ((13, 4), -1, 4),
                                          ((7, 3, 2, 2), 1, 2), ((5, 2, 2, 3), -1, 8)],
                         ids=["dense", "nchw", "k=N", "dense-uneven", "nchw-uneven", "k>N"])
def test_ghost_batches_have_their_own_statistics(shape, axis, k):
    rng = np.random.default_rng(23)
    c = shape[axis]
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c)
    layer = BatchNorm(axis=axis, virtual_batch_size=k, momentum=0.7)
    layer.build(shape)
    layer.set_weights([w.astype("float32") for w in (gamma, beta, np.zeros(c), np.ones(c))])
    x = (rng.standard_normal(shape) * 2 + rng.normal(0, 3, shape[0]).reshape(
        (-1,) + (1,) * (len(shape) - 1))).astype("float32")
    y = to_numpy(layer(x, training=True))
    y_ref, mean_ref, var_ref = reference.ghost_batch_norm(
        x.astype(np.float64), gamma, beta, np.zeros(c), np.ones(c), virtual_batch_size=k,
        axis=axis, momentum=0.7)
    assert_close(y, y_ref, what="output")
    assert_close(to_numpy(layer.moving_mean), mean_ref, what="moving_mean")
    assert_close(to_numpy(layer.moving_variance), var_ref, what="moving_variance")
    # inference is BN's with the moving statistics, groups or not
    plain = BatchNorm(axis=axis)
    plain.build(shape)
    plain.set_weights(layer.get_weights())
    assert_close(to_numpy(layer(x, training=False)), to_numpy(plain(x, training=False)))


def test_ghost_gradients_are_those_of_separate_batches():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((12, 3)).astype("float32") * 2
    r = rng.standard_normal((12, 3)).astype("float32")
    ghost = BatchNorm(virtual_batch_size=4)
    ghost.build(x.shape)
    plain = keras.layers.BatchNormalization()
    plain.build((4, 3))
    for layer in (ghost, plain):
        layer.set_weights([rng.uniform(0.5, 1.5, 3).astype("float32"),
                           rng.normal(0, 1, 3).astype("float32"), np.zeros(3, "float32"),
                           np.ones(3, "float32")] if layer is ghost else ghost.get_weights())
    dx, dw = grads(ghost, x, r, training=True)
    parts = [grads(plain, x[i:i + 4], r[i:i + 4], training=True) for i in (0, 4, 8)]
    assert_close(dx, np.concatenate([p[0] for p in parts]), what="dx")
    for name in ("gamma", "beta"):
        assert_close(dw[name], sum(p[1][name] for p in parts), what=f"d{name}")


@pytest.mark.parametrize("kwargs", [{}, {"renorm": True}], ids=["bn", "renorm"])
def test_ghost_with_mask_is_keras_layer_per_group(kwargs):
    """Each group of k examples, masked steps left out, is Keras's layer on that group alone;
    with momentum 0 the moving mean is the groups' average of their means."""
    rng = np.random.default_rng(30)
    x = (rng.standard_normal((6, 5, 3)) * 2 + rng.normal(0, 2, (6, 1, 1))).astype("float32")
    mask = rng.random((6, 5)) < 0.7
    ours = BatchNorm(virtual_batch_size=2, momentum=0.0, **kwargs)
    y = to_numpy(ours(x, training=True, mask=mask))
    means, variances = [], []
    for g in range(3):
        theirs = keras.layers.BatchNormalization(momentum=0.0, **kwargs)
        part = slice(2 * g, 2 * g + 2)
        y_group = to_numpy(theirs(x[part], training=True, mask=mask[part]))
        assert_close(y[part], y_group, what=f"group {g}")
        means.append(to_numpy(theirs.moving_mean))
        variances.append(to_numpy(theirs.moving_variance))
    assert_close(to_numpy(ours.moving_mean), np.mean(means, 0), what="moving_mean")
    if not kwargs:  # renorm derives its moving variance from the averaged stddev instead
        assert_close(to_numpy(ours.moving_variance), np.mean(variances, 0), what="moving_variance")


@pytest.mark.parametrize("kwargs", [{}, {"renorm": True}], ids=["bn", "renorm"])
def test_ghost_last_group_smaller_with_mask_is_keras_layer_per_group(kwargs):
    """k = 2 on 7 examples: groups 2, 2, 2 and a last group of 1, each Keras's layer on that
    group alone (masked steps left out); the moving mean averages the groups' means weighted by
    their share of the batch, n_g / N."""
    rng = np.random.default_rng(31)
    x = (rng.standard_normal((7, 5, 3)) * 2 + rng.normal(0, 2, (7, 1, 1))).astype("float32")
    mask = rng.random((7, 5)) < 0.7
    mask[:, 0] = True  # every group has a step that counts
    ours = BatchNorm(virtual_batch_size=2, momentum=0.0, **kwargs)
    y = to_numpy(ours(x, training=True, mask=mask))
    assert y.shape == x.shape
    means = []
    for part in (slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 7)):
        theirs = keras.layers.BatchNormalization(momentum=0.0, **kwargs)
        assert_close(y[part], to_numpy(theirs(x[part], training=True, mask=mask[part])),
                     what=f"group {part}")
        means.append(to_numpy(theirs.moving_mean))
    shares = np.array([2, 2, 2, 1]) / 7
    assert_close(to_numpy(ours.moving_mean), np.tensordot(shares, means, axes=1),
                 what="moving_mean")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a batch axis unknown while tracing")
def test_ghost_in_a_tensorflow_graph_with_an_unknown_batch_size():
    import tensorflow as tf

    rng = np.random.default_rng(32)
    layer = BatchNorm(virtual_batch_size=4, momentum=0.0)
    layer.build((None, 3))
    step = tf.function(lambda t: layer(t, training=True),
                       input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    for n in (8, 10):
        x = rng.standard_normal((n, 3)).astype("float32")
        y_ref, mean_ref, _ = reference.ghost_batch_norm(
            x.astype(np.float64), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3),
            virtual_batch_size=4, momentum=0.0)
        assert_close(to_numpy(step(x)), y_ref, what=f"output, batch {n}")
        assert_close(to_numpy(layer.moving_mean), mean_ref, what=f"moving_mean, batch {n}")


def test_ghost_errors_name_virtual_batch_size():
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(ValueError, match="virtual_batch_size"):
            BatchNorm(virtual_batch_size=bad)
    with pytest.raises(ValueError, match="virtual_batch_size"):
        BatchNorm(axis=0, virtual_batch_size=2).build((4, 3))


@pytest.mark.parametrize("kwargs,match", [
    ({"renorm": True, "renorm_clipping": {"rmax": 2.0, "bogus": 1.0}},
     r"renorm_clipping.*\['rmax', 'rmin', 'dmax'\]"),
    ({"renorm": True, "renorm_clipping": {"rmax": 0.5, "rmin": 2.0}}, "rmax should be greater"),
    ({"renorm": True, "renorm_clipping": {"dmax": -1.0}}, "dmax should be non-negative"),
    ({"renorm_clipping": "rmax=3"}, "renorm_clipping must be a dict"),
    ({"renorm_momentum": 2.0}, "renorm_momentum"),
    ({"axis_index_groups": [[0, 1]]}, "axis_index_groups needs axis_name"),
])
def test_bad_family_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(**kwargs)


def test_replica_arguments_off_their_backend():
    if BACKEND != "jax":
        with pytest.raises(ValueError, match="axis_name='r' is only supported with the JAX"):
            BatchNorm(axis_name="r")
    else:
        for groups in ([[0, 1], [2]], [[0, 2], [2, 3]], [[1, 2]]):
            with pytest.raises(ValueError, match="axis_index_groups must be a partition"):
                BatchNorm(axis_name="r", axis_index_groups=groups)
    if BACKEND != "tensorflow":
        with pytest.raises(ValueError, match="synchronized=True is only supported"):
            BatchNorm(synchronized=True)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="synchronized=True is TensorFlow's")
def test_synchronized_outside_a_strategy_is_local_bn():
    rng = np.random.default_rng(25)
    x = (rng.standard_normal((16, 4)) * 2 + 1).astype("float32")
    ours, theirs, local = (BatchNorm(synchronized=True),
                           keras.layers.BatchNormalization(synchronized=True), BatchNorm())
    outputs = [to_numpy(layer(x, training=True)) for layer in (ours, theirs, local)]
    assert_close(outputs[0], outputs[1])
    assert_close(outputs[0], outputs[2])
    assert_close(to_numpy(ours.moving_variance), to_numpy(theirs.moving_variance))


# Two logical CPUs must be configured before TensorFlow starts, hence a fresh process.
MIRRORED_SCRIPT = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from bnlab.layers import BatchNorm
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = (rng.standard_normal((2, 6, 3)) * 2 + rng.normal(0, 3, (2, 1, 1))).astype("float32")
results = {}
for name, cls in (("bnlab", BatchNorm), ("keras", keras.layers.BatchNormalization)):
    for synchronized in (True, False):
        with strategy.scope():
            layer = cls(synchronized=synchronized, momentum=0.5)
            layer.build((6, 3))
        shards = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group]))
        out = strategy.run(tf.function(lambda s: layer(s, training=True)), args=(shards,))
        y = np.concatenate([o.numpy() for o in strategy.experimental_local_results(out)])
        results[f"{name}-{synchronized}"] = [y.tolist(), layer.moving_mean.numpy().tolist(),
                                             layer.moving_variance.numpy().tolist()]
one = BatchNorm(momentum=0.5)
results["one"] = [one(x.reshape(12, 3), training=True).numpy().tolist(),
                  one.moving_mean.numpy().tolist(), one.moving_variance.numpy().tolist()]
print(json.dumps(results))
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="synchronized=True is TensorFlow's")
def test_synchronized_under_mirrored_strategy_equals_one_bn_over_the_global_batch():
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = {k: [np.asarray(v) for v in vs]
               for k, vs in json.loads(run.stdout.strip().splitlines()[-1]).items()}
    for ours, expected in zip(results["bnlab-True"], results["one"]):
        assert_close(ours, expected, what="synchronized vs one BN")
    for ours, theirs in zip(results["bnlab-True"], results["keras-True"]):
        assert_close(ours, theirs, what="synchronized vs Keras's synchronized")
    # the shards differ, so local statistics would not do
    assert np.max(np.abs(results["bnlab-False"][0] - results["one"][0])) > 0.1


def mapped_step(layer, x, axis_name=None):
    """Outputs, new non-trainable weights and d(Σ outputs·cos x)/dx of layer(x, training=True);
    with ``axis_name``, x holds one shard per replica, mapped with jax.vmap(axis_name=)."""
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def step(x):
        return layer.stateless_call(trainable, non_trainable, x, training=True)

    if axis_name is not None:
        step = jax.vmap(step, axis_name=axis_name)
    # compiled whole: op by op, XLA would compile each primitive of each shape on its own
    outputs, new_state = jax.jit(step)(jnp.asarray(x))
    dx = jax.jit(jax.grad(lambda x: jnp.sum(step(x)[0] * jnp.cos(x))))(jnp.asarray(x))
    return np.asarray(outputs), [np.asarray(v) for v in new_state], np.asarray(dx)


def built(shape, weights, **kwargs):
    layer = BatchNorm(**kwargs)
    layer.build(shape)
    layer.set_weights(weights)
    return layer


@only_jax
@pytest.mark.parametrize("kwargs", [{"axis": -1}, {"axis": 1}, {"axis": -1, "renorm": True},
                                    {"axis": -1, "momentum": None}],
                         ids=["nhwc", "nchw", "renorm", "cumulative"])
def test_axis_name_equals_one_bn_over_the_global_batch(kwargs):
    rng = np.random.default_rng(26)
    k, shard = 3, (4, 2, 2, 5) if kwargs["axis"] == -1 else (4, 5, 2, 2)
    x = (rng.standard_normal((k,) + shard) * 2 + 1).astype("float32")
    template = BatchNorm(**kwargs)
    template.build(shard)
    weights = [w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in template.get_weights()]
    synced = built(shard, weights, axis_name="r", **kwargs)
    y, state, dx = mapped_step(synced, x, axis_name="r")
    y_one, state_one, dx_one = mapped_step(built(shard, weights, **kwargs),
                                                 x.reshape((-1,) + shard[1:]))
    assert_close(y.reshape(y_one.shape), y_one, what="outputs")
    assert_close(dx.reshape(dx_one.shape), dx_one, what="dx")
    for replicas, one in zip(state, state_one):
        for row in replicas:
            assert_close(row, one, what="moving statistics")


@only_jax
def test_axis_index_groups_equal_separate_bns_per_group():
    rng = np.random.default_rng(27)
    shard = (3, 4)
    x = (rng.standard_normal((4,) + shard) * 2 + rng.normal(0, 3, (4, 1, 1))).astype("float32")
    weights = [rng.uniform(0.5, 1.5, 4).astype("float32"), rng.normal(0, 1, 4).astype("float32"),
               np.zeros(4, "float32"), np.ones(4, "float32")]
    groups = [[0, 2], [1, 3]]
    synced = built(shard, weights, axis_name="r", axis_index_groups=groups)
    y, state, dx = mapped_step(synced, x, axis_name="r")
    for group in groups:
        y_one, state_one, dx_one = mapped_step(built(shard, weights),
                                                     np.concatenate(x[group]))
        assert_close(np.concatenate(y[group]), y_one, what=f"outputs of group {group}")
        assert_close(np.concatenate(dx[group]), dx_one, what=f"dx of group {group}")
        for replicas, one in zip(state, state_one):
            for i in group:
                assert_close(replicas[i], one, what=f"moving statistics of replica {i}")


ALL_NEW = {"momentum": None, "renorm": True, "renorm_clipping": {"rmax": 3.0, "dmax": 1.0},
           "renorm_momentum": 0.7, "virtual_batch_size": 4, "unbiased_moving_variance": True}


def test_config_round_trips_every_argument():
    extra = {"axis_name": "batch", "axis_index_groups": [[0, 1], [2, 3]]} if BACKEND == "jax" \
        else {"synchronized": True} if BACKEND == "tensorflow" else {}
    layer = BatchNorm(**ALL_NEW, **extra)
    config = layer.get_config()
    for key, value in {**ALL_NEW, **extra}.items():
        assert config[key] == value, key
    assert BatchNorm.from_config(config).get_config() == config


def test_keras_file_round_trip_of_the_family(tmp_path):
    rng = np.random.default_rng(28)
    inputs = keras.Input((5,))
    h = BatchNorm(**ALL_NEW)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    x = rng.standard_normal((8, 5)).astype("float32")
    model(x, training=True)
    model(x * 2, training=True)
    model.save(tmp_path / "family.keras")
    loaded = keras.saving.load_model(tmp_path / "family.keras")
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    for a, b in zip(model.layers[1].weights, loaded.layers[1].weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(to_numpy(model(x)), to_numpy(loaded(x)))


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False),
                                          (False, False)])
@pytest.mark.parametrize("renorm", [False, True])
def test_weights_match_keras_for_every_combination(center, scale, renorm):
    rng = np.random.default_rng(29)
    ours = BatchNorm(center=center, scale=scale, renorm=renorm, dtype="mixed_float16")
    theirs = keras.layers.BatchNormalization(center=center, scale=scale, renorm=renorm,
                                             dtype="mixed_float16")
    for layer in (ours, theirs):
        layer.build((4, 3))
    describe = [(w.path.split("/")[-1], w.trainable, str(w.dtype)) for w in ours.weights]
    assert describe == [(w.path.split("/")[-1], w.trainable, str(w.dtype)) for w in theirs.weights]
    values = [rng.uniform(0.5, 2, 3).astype("float32") for _ in ours.weights]
    ours.set_weights(values)
    theirs.set_weights(ours.get_weights())
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)

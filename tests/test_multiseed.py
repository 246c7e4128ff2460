"""K seeds trained together (bnlab.lab.multiseed, JAX) against K separate runs of Keras's fit."""

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab import models
from bnlab.lab import experiments, multiseed, recipe, sweep, train
from bnlab.results.store import Store

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="the vectorized path is JAX's")


def configs_for(experiment, arm, seeds, **overrides):
    exp = experiments.get(experiment)
    overrides.setdefault("dataset", "fashion_mnist")
    return [experiments.trial_config(exp, exp.arm(arm), s, backend="jax", **overrides)
            for s in seeds]


def assert_same_history(together, alone, rel=1e-5):
    assert [r["epoch"] for r in together] == [r["epoch"] for r in alone]
    assert [r["step"] for r in together] == [r["step"] for r in alone]
    for a, b in zip(together, alone):
        metrics = set(a) - {"epoch", "step", "seconds"}
        assert metrics == set(b) - {"epoch", "step", "seconds"}
        for key in metrics:
            assert a[key] == pytest.approx(b[key], rel=rel, abs=rel), key


@pytest.mark.parametrize("experiment,arm", [
    ("bn-placement", "bn-after"), ("bn-placement", "baseline"), ("lenet-bn", "scratch"),
])
def test_seeds_together_equal_separate_fit_runs(experiment, arm, fashion_mnist):
    """Same initial weights, same batch order: each seed's history is the separate run's up to
    float round-off (the last, smaller batch of each epoch included)."""
    conv = experiment == "lenet-bn"
    configs = configs_for(experiment, arm, (1, 2) if conv else (1, 2, 3), epochs=1 if conv else 2,
                          limit=300 if conv else 1000)
    arrays, class_names = recipe.load_data(configs[0])
    together = multiseed.run_group(configs, arrays, class_names)
    for config, (history, results) in zip(configs, together):
        alone_history, alone_results = train.run_trial(config, arrays, class_names,
                                                       progress=False)
        assert_same_history(history, alone_history)
        for key in ("val_accuracy", "test_accuracy", "test_loss"):
            assert results[key] == pytest.approx(alone_results[key], rel=1e-5, abs=1e-5), key
        assert results["path"] == "jax-vmap" and results["seeds_together"] == len(configs)
        assert results["params_total"] == alone_results["params_total"]
        if "predictions" in alone_results:
            assert [p["predicted"] for p in results["predictions"]] == \
                   [p["predicted"] for p in alone_results["predictions"]]


# Conv models now put their seeds side by side in one compiled step (no vmap), and ghost's and
# group's histories equal fit's to 1e-7 (measured). When the seeds were vmapped, they differed
# by up to 1.6e-4 (ghost, train loss) and 6.0e-4 (group, val and test loss): round-off made
# chaotic, not a different step: one step agreed with train_on_batch to round-off, and fit
# itself, given train images scaled by 1 + 1e-7, moved those losses by up to 2.1e-4 and 6.3e-4.
# A vmapped conv path would need a loss tolerance of about 2e-3 here.
@pytest.mark.parametrize("norm,options", [
    ("renorm", {"renorm_clipping": {"rmax": 1.5, "dmax": 0.5}}),  # extra non-trainable weights
    ("ghost", {"virtual_batch_size": 16}),  # batches of 64: 4 ghosts; the last of 24: 16 and 8
])
def test_every_norm_in_the_study_cnn_together_equals_separate_fit_runs(norm, options,
                                                                         fashion_mnist):
    """The conv path with the BN family's norms that carry state or split the batch: the
    seeds-together history is the one-seed-at-a-time one (152 images, batch 64: the last batch
    of 24 is a ghost batch of 16 and a smaller one of 8). The stateless norms (GroupNorm,
    LayerNorm, ...) are held one step at a time below."""
    limit = 152  # training, validation and test images
    configs = configs_for("lenet-bn", "scratch", (1, 2), epochs=1, limit=limit)
    for config in configs:
        config["model"] = {"name": "study-cnn", "norm": norm, "norm_options": options}
        # SGD: RMSprop's g/√v turns round-off in near-zero gradients into whole steps (measured:
        # GroupNorm's val_loss 2.2296 together vs 2.2332 alone after 18 RMSprop steps)
        config["optimizer"] = {"name": "SGD", "learning_rate": 0.05}
    arrays, class_names = recipe.load_data(configs[0])
    together = multiseed.run_group(configs, arrays, class_names)
    for config, (history, results) in zip(configs, together):
        alone_history, alone_results = train.run_trial(config, arrays, class_names,
                                                       progress=False)
        # Many outputs are near ties, so round-off may flip the argmax of an image or two:
        # losses to 1e-4, accuracies to 2 images.
        for a, b in zip(history, alone_history):
            for key in set(a) - {"epoch", "step", "seconds"}:
                tolerance = {"rel": 1e-4, "abs": 1e-4} if "loss" in key else {"abs": 2.5 / limit}
                assert a[key] == pytest.approx(b[key], **tolerance), key
        assert results["test_loss"] == pytest.approx(alone_results["test_loss"], rel=1e-4)
        assert results["params_total"] == alone_results["params_total"]
    assert together[0][0] != together[1][0]  # two seeds, two histories


@pytest.fixture
def keras_own_bn(monkeypatch):
    """The seeds-together path with Keras's own BN code instead of bnlab's C++ kernels
    (layers.native_bn), for a comparison with fit that must hold to the last bit."""
    from bnlab.layers import native

    monkeypatch.setenv("BNLAB_NATIVE", "0")
    native.available.cache_clear()
    yield
    native.available.cache_clear()


@pytest.mark.parametrize("experiment,arm", [("deep-mlp", "bn"), ("deep-mlp", "no-bn")])
def test_deep_nets_agree_with_fit_step_by_step(experiment, arm, fashion_mnist, keras_own_bn):
    """The 20-layer MLP (SGD 0.01) is chaotic at initialization: Keras's fit itself, given inputs
    scaled by 1 + 1e-7, ends 3 steps later with weights that differ by 100%. So the two paths are
    compared one step at a time: after the first step on the same batch, the weights agree to
    float round-off. (The 19-layer CNN with Adam behaves alike; it is not vectorized by default.)
    With Keras's own BN code on both sides: bnlab's C++ kernels round differently, and in this
    relu net a pre-activation within round-off of 0 then takes the other side of the kink on a
    real batch, moving a whole column of a kernel's gradient (measured: 0.4 % of the weights
    beyond 1e-5, finite differences halfway between the two). tests/test_native_bn.py holds the
    kernels to Keras's BN layer by layer and on whole models without such ties."""
    config = configs_for(experiment, arm, (1,), epochs=1, steps=1, limit=500)[0]
    arrays, _ = recipe.load_data(config)
    x, y = arrays["train"][0], recipe.labels(config, arrays["train"][1])
    batch = recipe.epoch_order(1, 0, len(x))[:config["batch_size"]]
    group = multiseed.SeedGroup([config])
    keras.utils.set_random_seed(1)
    model = recipe.compile_model(config)
    group.train_steps(np.asarray(x, "float32"), y, batch[None, None, :])
    model.train_on_batch(x[batch], y[batch])
    off, total = 0, 0
    for together, alone in zip(group.state[0], model.trainable_variables):
        alone = np.asarray(alone.value)
        off += np.sum(np.abs(np.asarray(together[0]) - alone) > 1e-5 * np.max(np.abs(alone)))
        total += alone.size
    # SGD: every weight agrees. Adam's first step is about lr·sign(g), so the few components whose
    # gradient is within round-off of zero may take the other sign: allow 0.1% of them.
    assert off / total <= (0.001 if config["optimizer"]["name"] == "Adam" else 0.0)


@pytest.mark.parametrize("model", ["lenet", "mlp"])  # the conv path, with conv and Dense norms
@pytest.mark.parametrize("norm", models.NORMS)
def test_one_step_of_every_norm_together_equals_train_on_batch(model, norm, fashion_mnist):
    """One SGD step of two seeds together (vmapped and scanned for the MLP, side by side in one
    compiled step for the conv models: SeedGroup._each_seed) against Keras's train_on_batch of
    each seed on the same batch of 24 images (3 ghost batches of 8, so the last, smaller batch
    of an epoch is covered too): the weight updates and the moving statistics agree to float
    round-off, for every norm."""
    configs = configs_for("lenet-bn", "scratch", (1, 2), epochs=1, limit=48)
    for config in configs:
        config["model"] = {"name": model, "norm": norm}
        config["optimizer"] = {"name": "SGD", "learning_rate": 0.05}
        # Standardized: no pixel is 0. On scaled images renorm's first step (the identity while
        # its moving statistics are 0 and 1) puts relu on its kink at every background pixel,
        # and the sign of a round-off residue there moved fit's own update by 6.5% of its
        # largest component when the images were scaled by 1 + 1e-7.
        config["preprocessing"] = "standardize"
    arrays, _ = recipe.load_data(configs[0])
    x, y = np.asarray(arrays["train"][0], "float32"), arrays["train"][1]
    batches = np.stack([recipe.epoch_order(c["seed"], 0, len(x))[:24] for c in configs])
    group = multiseed.SeedGroup(configs)
    group.train_steps(x, y, batches[:, None, :])
    together_trainable, together_moving, _ = group.state
    alone = recipe.compile_model(configs[0])  # compiled once; SGD's step does not count steps
    for i, config in enumerate(configs):
        if i:  # the next seed's initial weights
            alone.set_weights(models.build(model, norm=norm, seed=config["seed"]).get_weights())
        before = [np.asarray(v.value) for v in alone.trainable_variables]
        alone.train_on_batch(x[batches[i]], y[batches[i]])
        # The updates -lr·g, each to 1e-4 of the largest one: a bias right before BN has a zero
        # true gradient, so its computed one is round-off and has no scale of its own. Measured:
        # conv models 0 (bitwise), the MLP at most 9.5e-6, as much as fit's own update moves
        # when the images are scaled by 1 + 1e-7. (With the conv seeds vmapped: up to 3.9e-5,
        # where a float64 step put the vmapped update 3.8e-5 and fit's 3.9e-6 from the exact one.)
        updates = [np.asarray(v.value) - w for v, w in zip(alone.trainable_variables, before)]
        scale = max(np.max(np.abs(u)) for u in updates)
        for together, w, update in zip(together_trainable, before, updates):
            np.testing.assert_allclose(np.asarray(together[i]) - w, update, rtol=0,
                                       atol=1e-4 * scale)
        for together, moving in zip(together_moving, alone.non_trainable_variables):
            np.testing.assert_allclose(np.asarray(together[i]), np.asarray(moving.value),
                                       rtol=1e-5, atol=1e-6)


def test_step_loop_logs_like_the_fit_path(fashion_mnist):
    """Seed 003's step loop, run on the MLP: the loop (``bnlab.lab.loop``) does not depend on the
    model, and the deep CNN's vectorized program takes minutes to compile on two cores."""
    configs = configs_for("deep-cnn", "scratch", (1, 2), steps=20, limit=600)
    for config in configs:
        config["log_every"] = {"batch": 10, "validation": 20}
        config["model"] = {"name": "mlp", "norm": "scratch"}
        config["extras"] = ["single_sample"]
    arrays, class_names = recipe.load_data(configs[0])
    (history, results), _ = multiseed.run_group(configs, arrays, class_names)
    assert [row["step"] for row in history] == [0, 10, 20]
    assert "batch_accuracy" in history[1] and "val_accuracy" in history[2]
    # before any training both paths see the same initial weights
    alone, _ = train.run_trial(configs[0], arrays, class_names, progress=False)
    assert history[0]["val_loss"] == pytest.approx(alone[0]["val_loss"], rel=1e-5)
    assert 0 <= results["single_sample_accuracy"] <= 1


def test_single_images_agree_with_batched_inference(fashion_mnist):
    configs = configs_for("bn-placement", "bn-after", (1, 2), epochs=1, limit=500)
    arrays, _ = recipe.load_data(configs[0])
    group = multiseed.SeedGroup(configs)
    x, y = arrays["train"]
    group.train_epoch(np.asarray(x, "float32"), y, 0, 32)
    test = arrays["test"][0][:20]
    batched = group.predict(test)
    one_by_one = np.concatenate([group.predict(test[i:i + 1]) for i in range(20)], axis=1)
    np.testing.assert_allclose(one_by_one, batched, rtol=1e-5, atol=1e-6)


def test_a_group_needs_configs_that_differ_only_in_seed():
    a = configs_for("bn-placement", "bn-after", (1,), epochs=1)[0]
    b = configs_for("bn-placement", "bn-after", (2,), epochs=2)[0]
    with pytest.raises(ValueError, match="differ only in distinct seeds"):
        multiseed.SeedGroup([a, b])
    with pytest.raises(ValueError, match="differ only in distinct seeds"):
        multiseed.SeedGroup([a, a])


def test_run_trials_trains_the_seeds_of_an_arm_together_and_resumes(tmp_path, monkeypatch,
                                                                   fashion_mnist):
    configs = (configs_for("bn-placement", "baseline", (1, 2), epochs=1, limit=500)
               + configs_for("bn-placement", "bn-after", (1, 2), epochs=1, limit=500))
    groups, real = [], multiseed.run_group

    def interrupted_on_second_group(group, *args, **kwargs):
        groups.append([c["arm"] for c in group])
        if len(groups) == 2:
            raise KeyboardInterrupt
        return real(group, *args, **kwargs)

    monkeypatch.setattr(multiseed, "run_group", interrupted_on_second_group)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            sweep.run_trials(configs, store, progress=False, log=lambda *a: None)
        assert groups == [["baseline", "baseline"], ["bn-after", "bn-after"]]
        status = {(t.arm, t.seed): t.status for t in store.trials(status=None)}
        assert status == {("baseline", 1): "finished", ("baseline", 2): "finished",
                          ("bn-after", 1): "failed", ("bn-after", 2): "failed"}
        monkeypatch.setattr(multiseed, "run_group", real)
        sweep.run_trials(configs, store, progress=False, log=lambda *a: None)
        trials = store.trials()
        assert len(trials) == 4 and {t.results["path"] for t in trials} == {"jax-vmap"}


def test_paths_choose_which_seeds_train_together():
    """auto: the dense models, LeNet and the study CNN together, the deep CNN one by one with
    fit; together: every arm; fit: none. A conv model's group loops over its seeds and steps (no
    vmap, no scan: see SeedGroup._each_seed), a dense model's is vectorized."""
    mlp = configs_for("bn-placement", "bn-after", (1, 2), epochs=1)
    lenet = configs_for("lenet-bn", "scratch", (1, 2), epochs=1)
    deep_cnn = configs_for("deep-cnn", "keras", (1, 2), epochs=1)
    units = {path: [len(u) for u in train.work_units(mlp + lenet + deep_cnn, path)]
             for path in train.PATHS}
    assert units == {"auto": [2, 2, 1, 1], "together": [2, 2, 2], "fit": [1] * 6}
    # many seeds: units of at most MAX_TOGETHER, each claimed when it starts (bnlab.lab.sweep)
    many = configs_for("bn-placement", "bn-after", range(1, 2 * train.MAX_TOGETHER + 2), epochs=1)
    units = train.work_units(many, "auto")
    assert [len(u) for u in units] == [train.MAX_TOGETHER, train.MAX_TOGETHER, 1]
    assert [c["seed"] for u in units for c in u] == [c["seed"] for c in many]
    # the most seed-steps first: batch-size's N = 2 arm (6,864 steps) before N = 32's (429)
    study = experiments.get("batch-size")
    arms = [experiments.trial_config(study, study.arm(a), s)
            for a in ("bn-n32", "bn-n2", "bn-n8") for s in (1, 2)]
    assert [[c["arm"] for c in u] for u in train.work_units(arms, "auto")] == [
        ["bn-n2"] * 2, ["bn-n8"] * 2, ["bn-n32"] * 2]
    assert not multiseed.SeedGroup(mlp).convolutional
    assert multiseed.SeedGroup(lenet).convolutional
    # conv steps are unrolled only for trials long enough to pay the longer compile back
    assert multiseed.SeedGroup(lenet).unroll == 1  # 938 steps
    long = configs_for("lenet-bn", "scratch", (1, 2), epochs=43)  # 40,334 steps
    assert multiseed.SeedGroup(long).unroll == multiseed.UNROLL // 2


def test_run_trials_together_trains_a_conv_arm_as_one_group(tmp_path, fashion_mnist):
    # the lenet case of test_seeds_together_equal_separate_fit_runs: its programs come from the
    # worker's program cache when both tests run in the same worker
    configs = configs_for("lenet-bn", "scratch", (1, 2), epochs=1, limit=300)
    with Store(tmp_path / "s.sqlite") as store:
        sweep.run_trials(configs, store, progress=False, log=lambda *a: None, path="together")
        trials = store.trials()
        assert len(trials) == 2
        assert {(t.results["path"], t.results["seeds_together"]) for t in trials} == {
            ("jax-vmap", 2)}


def test_unrolled_conv_steps_equal_one_step_calls(monkeypatch, fashion_mnist):
    """A conv model's chunk of steps written out in one program (``SeedGroup._unrolled``) is the
    same arithmetic as calls of the one-step program: with UNROLL = 6 and two seeds, 7 steps =
    two chunks of 3 and a single step, against 7 single steps."""
    configs = configs_for("study-cnn-batches", "bn-b8", (1, 2), epochs=1, limit=200)
    arrays, _ = recipe.load_data(configs[0])
    x, y = (np.asarray(a) for a in arrays["train"])
    idx = np.stack([np.random.default_rng(s).permutation(len(x))[:7 * 8].reshape(7, 8)
                    for s in (1, 2)])  # (K, S, B)
    states = {}
    monkeypatch.setattr(multiseed, "UNROLL_FROM", 0)  # unrolled however short the trial
    for unroll in (6, 1):
        monkeypatch.setattr(multiseed, "UNROLL", unroll)
        group = multiseed.SeedGroup(configs)
        assert group.unroll == max(1, unroll // 2)
        group.train_steps(x, y, idx)
        states[unroll] = group.state
    for a, b in zip(*(jax_leaves(states[u]) for u in (6, 1))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def jax_leaves(state):
    return [np.asarray(v) for group in state for v in group]


def test_a_units_trials_are_claimed_when_it_starts(tmp_path):
    """The driver claims a unit's trials when it hands the unit to the executor, not a run's all
    at once: while the first unit of MAX_TOGETHER seeds trains, the rest are not yet claimed."""
    configs = configs_for("bn-placement", "bn-after", range(1, train.MAX_TOGETHER + 3), epochs=1)

    class Recording:
        slots = 1

        def __init__(self, store):
            self.store, self.seen, self.queue = store, [], []

        def submit(self, group, together):
            running = [t.seed for t in self.store.trials(status="running")]
            self.seen.append((len(group), len(running)))
            self.queue.append((handle := object(), group))
            return handle

        def next_done(self):
            handle, group = self.queue.pop(0)
            return handle, [([], {"test_accuracy": 0.5}) for _ in group], None

        def cancel(self):
            self.queue.clear()

    with Store(tmp_path / "s.sqlite") as store:
        executor = Recording(store)
        sweep.run_trials(configs, store, progress=False, log=lambda *a: None, executor=executor)
        assert executor.seen == [(train.MAX_TOGETHER, train.MAX_TOGETHER), (2, 2)]
        assert len(store.trials()) == len(configs)

"""One trial and many: histories, results, seed 003's step loop, determinism, resuming."""

import os
import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab.lab import experiments, loop, recipe, sweep, train
from bnlab.results.store import Store

BACKEND = keras.backend.backend()


def config_for(experiment="bn-placement", arm="bn-after", seed=1, **overrides):
    exp = experiments.get(experiment)
    overrides.setdefault("limit", 2000)
    if not exp.steps:
        overrides.setdefault("epochs", 1)
    overrides.setdefault("dataset", "fashion_mnist")
    return experiments.trial_config(exp, exp.arm(arm), seed, backend=BACKEND, **overrides)


def run(config):
    arrays, class_names = recipe.load_data(config)
    return train.run_trial(config, arrays, class_names, progress=False)


@pytest.mark.backend
def test_epoch_trial_records_history_and_results(fashion_mnist):
    history, results = run(config_for(epochs=2))
    assert [row["epoch"] for row in history] == [1, 2]
    for row in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(row)
    assert history[1]["seconds"] > history[0]["seconds"] > 0
    assert history[1]["loss"] < history[0]["loss"]
    assert results["test_accuracy"] > 0.3  # chance is 0.1; 2 epochs on 2000 images
    assert (results["params_total"], results["params_non_trainable"]) == (271_346, 2_368)
    assert results["backend"] == BACKEND and results["seconds_per_epoch"] > 0


@pytest.mark.backend
def test_same_config_gives_the_same_history(fashion_mnist):
    config = config_for(arm="bn-before", limit=1000)
    first, _ = run(config)
    second, _ = run(config)
    for a, b in zip(first, second):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    other, _ = run(config_for(arm="bn-before", limit=1000, seed=2))
    assert other[0]["loss"] != first[0]["loss"]


def test_step_trial_logs_like_seed_003(fashion_mnist):
    """Seed 003's step loop, run on the MLP: the loop (``bnlab.lab.loop``) does not depend on the
    model, and the deep CNN's 19 layers take most of a minute to compile."""
    config = config_for("deep-cnn", "scratch", steps=20, limit=600)
    config["model"] = {"name": "mlp", "norm": "scratch"}
    config["log_every"] = {"batch": 5, "validation": 10}
    history, results = run(config)
    assert [row["step"] for row in history] == [0, 5, 10, 15, 20]
    assert [("val_accuracy" in row, "batch_accuracy" in row) for row in history] == [
        (True, False), (False, True), (True, False), (False, True), (True, False)]
    assert 0.0 <= results["single_sample_accuracy"] <= 1.0
    assert results["seconds_per_step"] > 0


def test_predictions_of_the_first_test_images(fashion_mnist):
    config = config_for("deep-mlp", "bn", limit=1000)
    _, results = run(config)
    predictions = results["predictions"]
    assert [p["index"] for p in predictions] == [0, 1, 2]
    assert predictions[0]["label"] == "Ankle boot"  # Fashion-MNIST's first test image
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-3 for p in predictions)


def test_single_sample_accuracy_equals_batched_accuracy_in_inference_mode(fashion_mnist):
    """A BN model fed one image at a time must agree with the batched predictions: inference
    mode uses population statistics (a batch of one would otherwise normalize to β)."""
    config = config_for("bn-placement", "bn-after", limit=1000)
    arrays, _ = recipe.load_data(config)
    keras.utils.set_random_seed(0)
    model = recipe.compile_model(config)
    model.fit(*arrays["train"], batch_size=32, epochs=1, verbose=0)
    x, y = arrays["test"]
    batched = np.mean(np.argmax(model.predict(x[:100], verbose=0), axis=1) == y[:100])
    assert loop.single_sample_accuracy(model.predict_on_batch, x, y) == pytest.approx(batched)


def test_step_order_is_a_fresh_permutation_each_pass():
    order = recipe.step_order(n=100, batch_size=32, steps=7, seed=1)
    assert order.shape == (7, 32)
    first_pass = order[:3].ravel()
    assert len(set(first_pass)) == 96  # three full batches of distinct images, the tail dropped
    assert np.array_equal(order, recipe.step_order(100, 32, 7, seed=1))
    assert not np.array_equal(order, recipe.step_order(100, 32, 7, seed=2))
    assert np.array_equal(order[:3].ravel(), recipe.epoch_order(1, 0, 100)[:96])
    with pytest.raises(ValueError, match="fewer than one batch"):
        recipe.step_order(n=10, batch_size=32, steps=1, seed=1)


def test_interrupted_run_resumes_with_only_the_missing_trials(tmp_path, monkeypatch,
                                                              fashion_mnist):
    configs = [config_for(arm=arm, limit=500) for arm in ("baseline", "bn-after", "bn-before")]
    real_run_trial, calls = train.run_trial, []

    def interrupted_on_second(config, *args, **kwargs):
        calls.append(config["arm"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_trial(config, *args, **kwargs)

    with Store(tmp_path / "s.sqlite") as store:
        monkeypatch.setattr(train, "run_trial", interrupted_on_second)
        with pytest.raises(KeyboardInterrupt):
            sweep.run_trials(configs, store, progress=False, log=lambda *a: None, path="fit")
        assert [t.status for t in store.trials(status=None)] == ["finished", "failed"]

        calls.clear()
        monkeypatch.setattr(train, "run_trial",
                            lambda c, *a, **k: (calls.append(c["arm"]), real_run_trial(c, *a, **k))[1])
        messages = []
        sweep.run_trials(configs, store, progress=False, log=messages.append, path="fit")
        assert calls == ["bn-after", "bn-before"]
        assert "1 of 3 trials already finished" in messages[0]
        assert sorted(t.arm for t in store.trials()) == ["baseline", "bn-after", "bn-before"]

        calls.clear()
        sweep.run_trials(configs, store, progress=False, log=messages.append, path="fit")
        assert calls == []  # a finished trial is never run twice
        sweep.run_trials(configs[:1], store, force=True, progress=False, log=messages.append,
                         path="fit")
        assert calls == ["baseline"]


def test_configure_xla_turns_ynnpack_off_only_for_one_seed_at_a_time(monkeypatch):
    from bnlab.lab.runtime import YNNPACK_OFF, configure_xla

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    if keras.backend.backend() != "jax":  # XLA's options are the JAX backend's
        configure_xla(vectorized=False)
        assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
        return
    configure_xla(vectorized=True)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    configure_xla(vectorized=False)
    assert os.environ["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {YNNPACK_OFF}"
    configure_xla(vectorized=False)  # idempotent
    assert os.environ["XLA_FLAGS"].count("ynn_fusion_type") == 1
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")
    configure_xla(vectorized=False)  # the user's own choice is kept
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=dot"
    monkeypatch.delenv("XLA_FLAGS")
    configure_xla(vectorized=False)
    assert os.environ["XLA_FLAGS"] == YNNPACK_OFF


@pytest.mark.parametrize("vectorized", [False, True])
def test_configure_xla_gives_conv_models_ynnpack_reductions(monkeypatch, vectorized):
    from bnlab.lab.runtime import YNNPACK_REDUCTIONS, configure_xla

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    configure_xla(vectorized=vectorized, convolutional=True)
    expected = YNNPACK_REDUCTIONS if keras.backend.backend() == "jax" else None
    assert os.environ.get("XLA_FLAGS") == expected
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    configure_xla(vectorized=vectorized, convolutional=True)  # the user's own choice is kept
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's program cache")
def test_program_cache_folder_is_the_argument_then_jaxs_own_then_bnlabs(monkeypatch, tmp_path):
    import jax

    from bnlab.lab.runtime import enable_compilation_cache

    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path / "bnlab"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    saved = jax.config.jax_compilation_cache_dir  # this process's, put back after
    try:
        enable_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "bnlab" / "jax")
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
        enable_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax-own")
        enable_compilation_cache(tmp_path / "given")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "given")
    finally:
        jax.config.update("jax_compilation_cache_dir", saved)


def test_trains_convolutions_reads_the_model_names():
    from bnlab.lab import experiments
    from bnlab.lab.runtime import trains_convolutions

    def config(name):
        experiment = experiments.get(name)
        return experiments.trial_config(experiment, experiment.arms[0], 1, epochs=1)

    assert not trains_convolutions([config("bn-placement"), config("ioffe-fig1")])
    assert trains_convolutions([config("bn-placement"), config("lenet-bn")])
    assert trains_convolutions([config("study-cnn-batches")]) and trains_convolutions([config("deep-cnn")])


def test_validation_is_due_where_a_chunk_reaches_a_multiple_of_its_interval():
    """Logging chunks of 100 steps with validation every 170 (the batch-size study at batch 32,
    whose intervals scale with the batch size): validation after the chunks that pass 170, 340,
    ... and after the last step; with intervals that divide, exactly at their multiples."""
    due = [s for s in range(100, 1001, 100) if loop.validation_due(s, 100, 170, 1000)]
    assert due == [200, 400, 600, 700, 900, 1000]
    due = [s for s in range(10, 41, 10) if loop.validation_due(s, 10, 20, 40)]
    assert due == [20, 40]
    assert loop.validation_due(45, 5, 20, 45)  # the last, shorter chunk

"""The activation probe on both training paths, stored with the trial's results."""

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab import models
from bnlab.lab import experiments, multiseed, recipe, sweep, train
from bnlab.results import report
from bnlab.results.store import Store
from bnlab.tools import precise, probe

SPEC = {"layers": ["bn", 2], "every": 5}


def configs():
    exp = experiments.get("bn-placement")
    return [dict(experiments.trial_config(exp, exp.arm("bn-after"), seed, epochs=1, limit=500,
                                          dataset="fashion_mnist",
                                          backend=keras.backend.backend()), probe=SPEC)
            for seed in (1, 2)]


def test_both_paths_record_the_same_percentiles(tmp_path, fashion_mnist):
    records = {}
    for path in train.PATHS:
        with Store(tmp_path / f"{path}.sqlite") as store:
            sweep.run_trials(configs(), store, progress=False, log=lambda *_: None, path=path)
            records[path] = {t.seed: t.results["probe"] for t in store.trials("bn-placement")}
    with Store(tmp_path / "auto.sqlite") as store:  # the report draws it
        written = report.write_report(
            store, experiments.as_report_spec(experiments.get("bn-placement")), tmp_path / "r")
    assert written["probe"].stat().st_size > 0
    assert "Activation distributions" in written["markdown"].read_text()
    fit, auto = records["fit"][1], records["auto"][1]
    # 500 images in batches of 32: 16 steps; a probe at step 0 and every 5 steps
    assert fit["steps"] == auto["steps"] == [0, 5, 10, 15]
    assert list(fit["layers"]) == ["1:BatchNormalization", "2:Dense", "3:BatchNormalization",
                                   "5:BatchNormalization"]
    # The paths' BN round off differently (XLA's two passes, the C++ kernels' one), and after 10
    # steps a pre-activation within round-off of 0 may sit on the other side of relu's kink: a
    # low percentile then moves to the next order statistic. Measured: at most 3.4e-4 (of a
    # range of 1.2), against 2.5e-7 when the kernels summed in two passes as XLA does.
    for key in fit["layers"]:
        np.testing.assert_allclose(auto["layers"][key], fit["layers"][key], rtol=1e-4, atol=1e-3)
        if key != "1:BatchNormalization":  # its input is the images: fixed
            assert fit["layers"][key][-1] != fit["layers"][key][0]  # training moved them
    # step 0 is the untrained model's inputs on the first 256 training images, in training mode
    config = configs()[0]
    keras.utils.set_random_seed(config["seed"])
    model = recipe.compile_model(config)
    x = recipe.load_data(config)[0]["train"][0][:probe.PROBE_IMAGES]
    chosen = probe.resolve(model, SPEC["layers"])
    inputs = precise.layer_inputs(model, precise.input_model(model, [l for _, l in chosen]), x,
                                  training=True)
    for (key, _), values in zip(chosen, inputs):
        np.testing.assert_allclose(fit["layers"][key][0],
                                   np.percentile(values, probe.PERCENTILES), rtol=1e-5, atol=1e-6)


def ioffe_config(arm, mode, steps=30):
    """ioffe-fig1's trial, tiny: 600 images of each split, its probe (in ``mode``) and test curve
    every 10 steps (the probe on its 600 test images)."""
    exp = experiments.get("ioffe-fig1")
    config = experiments.trial_config(exp, exp.arm(arm), 1, steps=steps, limit=600,
                                      dataset="fashion_mnist", backend=keras.backend.backend())
    config["log_every"] = {"batch": 5, "validation": 10}
    config["probe"]["every"] = 10
    config["probe"]["mode"] = mode
    return config


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the seeds-together path is JAX's")
@pytest.mark.parametrize("arm,layer,mode", [("bn-glorot", "9:Activation", "training"),
                                            ("bn-glorot", "9:Activation", "inference"),
                                            ("none-glorot", "6:Activation", "training")])
def test_ioffe_probe_is_the_same_on_both_paths(arm, layer, mode, fashion_mnist):
    """ioffe-fig1's probe (unit 0 of the last sigmoid's input, the test split; in training mode,
    the study's, the statistics of the probe batch, in inference mode the moving ones) and its
    test accuracy at the validation points, recorded by fit and by the seeds-together program
    (called directly) for the same config and seed, agree to round-off."""
    config = ioffe_config(arm, mode)
    arrays, class_names = recipe.load_data(config)
    fit_history, fit = train.run_trial(config, arrays, class_names, progress=False)
    [(together_history, together)] = multiseed.run_group([config], arrays, class_names)
    assert together["path"] == "jax-scan" and fit["path"] == "keras-fit"
    record = fit["probe"]
    assert record["steps"] == together["probe"]["steps"] == [0, 10, 20, 30]
    assert (record["unit"], record["mode"], record["split"], record["images"]) == \
        (0, mode, "test", 1000)
    assert list(record["layers"]) == list(together["probe"]["layers"]) == [layer]
    np.testing.assert_allclose(together["probe"]["layers"][layer], record["layers"][layer],
                               rtol=1e-4, atol=1e-5)
    assert record["layers"][layer][-1] != record["layers"][layer][0]  # training moved them
    curve = [(r["step"], r["test_accuracy"]) for r in fit_history if "test_accuracy" in r]
    assert [s for s, _ in curve] == [0, 10, 20, 30]
    np.testing.assert_allclose([r["test_accuracy"] for r in together_history
                                if "test_accuracy" in r], [a for _, a in curve], atol=1.5 / 600)
    # the record's step 30 is the trained model's: unit 0 of the last sigmoid's input on the
    # 600 test images (the limit), in the probe's mode, its percentiles
    keras.utils.set_random_seed(config["seed"])
    model = recipe.compile_model(config)
    model.fit(arrays["train"][0][recipe.step_order(600, 60, 30, 1).ravel()],
              recipe.labels(config, arrays["train"][1])[recipe.step_order(600, 60, 30, 1).ravel()],
              batch_size=60, shuffle=False, verbose=0)
    [(_, last)] = probe.resolve(model, ["activation:-1"])
    [values] = precise.layer_inputs(model, precise.input_model(model, [last]), arrays["test"][0],
                                    training=mode == "training")
    values = values[:, 0]
    np.testing.assert_allclose(record["layers"][layer][-1],
                               np.percentile(values, probe.PERCENTILES), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the seeds-together path is JAX's")
def test_precise_bn_extras_are_the_same_on_both_paths(fashion_mnist):
    """precise-bn's measurements after training (bnlab.lab.measure.after), for each seed trained
    together, equal those of the seed trained alone with fit (its MLP, 8 steps)."""
    exp = experiments.get("precise-bn")
    configs = [experiments.trial_config(exp, exp.arm("lr0.05"), seed, steps=8, limit=320,
                                        dataset="fashion_mnist", backend="jax")
               for seed in (1, 2)]
    arrays, class_names = recipe.load_data(configs[0])
    together = multiseed.run_group(configs, arrays, class_names)
    for config, (_, results) in zip(configs, together):
        _, alone = train.run_trial(config, arrays, class_names, progress=False)
        assert results["precise_images"] == alone["precise_images"] == 320
        for key in ("ema_mean_error", "ema_variance_error", "debiased_test_accuracy",
                    "precise_test_accuracy_320"):
            assert results[key] == pytest.approx(alone[key], rel=1e-3, abs=1e-5), key
        assert results["precise_test_accuracy"] == pytest.approx(
            alone["precise_test_accuracy"], abs=1.5 / 320)
        # the EMA statistics after 8 steps at momentum 0.99 are mostly their start: stale
        assert alone["ema_variance_error"] > 0.1
    assert together[0][1]["ema_mean_error"] != together[1][1]["ema_mean_error"]


@pytest.mark.parametrize("spec,word", [({"layers": ["bn"], "every": 0}, "'every'"),
                                       ({"layers": [], "every": 5}, "'layers'"),
                                       ({"layers": "bn"}, "'layers'"),
                                       ({"layers": [True]}, "'layers'"),
                                       ({"layers": ["activation:last"]}, "integer index"),
                                       ({"unit": -1}, "'unit'"),
                                       ({"mode": "train"}, "training, inference"),
                                       ({"split": "val"}, "train, test"),
                                       ({"images": 0}, "'images'"),
                                       ({"layer": ["bn"]}, "keys among layers, every"),
                                       (["bn"], "keys among")])
def test_bad_probe_spec_names_the_argument(spec, word):
    with pytest.raises(ValueError, match=word) as error:
        probe.check_spec(spec)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("layers,unit,word", [(["activation:3"], None, "has 3 activation"),
                                              (["no_such_layer"], None, "not a layer"),
                                              ([12], None, "out of range"),
                                              (["activation:-1"], 100, "'unit' 100")])
def test_probe_layers_that_do_not_fit_the_model(layers, unit, word):
    model = models.build("sigmoid-mlp", norm="none", seed=0)
    assert [k for k, _ in probe.resolve(model, ["activation:0", "activation:-1", 1])] == \
        ["1:Dense", "2:Activation", "6:Activation"]
    with pytest.raises(ValueError, match=word):
        probe.resolve(model, layers, unit)

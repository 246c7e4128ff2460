"""The activation probe on both training paths, stored with the trial's results."""

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab.lab import experiments, recipe, sweep, train
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
    for key in fit["layers"]:
        np.testing.assert_allclose(auto["layers"][key], fit["layers"][key], rtol=2e-3, atol=2e-4)
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


@pytest.mark.parametrize("spec,word", [({"layers": ["bn"], "every": 0}, "every"),
                                       ({"layers": [], "every": 5}, "layers"),
                                       ({"layer": ["bn"]}, "keys")])
def test_bad_probe_spec_names_the_argument(spec, word):
    with pytest.raises(ValueError, match=word):
        probe.check_spec(spec)

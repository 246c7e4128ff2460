"""`bnlab run --save-models`: every trial's trained model kept as a .keras file, from both paths."""

import numpy as np
import pytest

import bnlab  # noqa: F401
import keras
from bnlab import cli
from bnlab.lab import experiments, recipe, sweep
from bnlab.results.store import Store


def configs(seeds=(1, 2)):
    exp = experiments.get("bn-placement")
    return [experiments.trial_config(exp, exp.arm("bn-after"), seed, epochs=1, limit=500,
                                     dataset="fashion_mnist", backend=keras.backend.backend())
            for seed in seeds]


@pytest.mark.parametrize("path", ["together", "fit"])  # the two engines ("auto" picks one)
def test_saved_models_load_and_score_as_the_stored_results(path, tmp_path, fashion_mnist):
    folder = tmp_path / "models"
    trials = configs()
    with Store(tmp_path / "s.sqlite") as store:
        sweep.run_trials(trials, store, progress=False, log=lambda *_: None, path=path,
                         save_models=folder)
        stored = {t.seed: t.results for t in store.trials("bn-placement")}
    arrays, _ = recipe.load_data(trials[0])
    x_test, y_test = arrays["test"]
    for config in trials:
        results = stored[config["seed"]]
        expected = folder.resolve() / f"bn-after-s{config['seed']}-{Store.trial_id(config)}.keras"
        assert results["model_path"] == str(expected)
        model = keras.saving.load_model(results["model_path"])
        _, accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
        assert accuracy == pytest.approx(results["test_accuracy"], abs=1e-6)
    assert sorted(p.name for p in folder.glob("*.keras")) == sorted(
        f"bn-after-s{c['seed']}-{Store.trial_id(c)}.keras" for c in trials)


def test_save_models_goes_under_out(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "bn-placement", "--arms", "bn-after", "--seeds", "1", "--epochs", "1",
                     "--limit", "500", "--quiet", "--save-models", "--out", "elsewhere"]) == 0
    assert len(list((tmp_path / "elsewhere" / "models").glob("bn-after-s1-*.keras"))) == 1
    assert (tmp_path / "elsewhere" / "report.md").is_file()
    assert not (tmp_path / "runs" / "bn-placement").exists()

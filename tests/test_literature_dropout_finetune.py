"""The literature studies (bnlab.lab.literature): what fine-tuning starts from (pretraining once
per seed, cached; the class subsets), and each study's quick form end to end on real
Fashion-MNIST images, down to its claims, CSV and figure."""

import numpy as np
import pytest

from bnlab import models
from bnlab.cli import main as cli_main
from bnlab.lab import experiments, pretrain, recipe
from bnlab.lab.literature import STUDIES
from bnlab.results.store import Store
from bnlab.tools import precise


def main(*argv):
    return cli_main(list(argv))


def test_the_studies_are_registered_with_claims_on_their_own_arms():
    for study in STUDIES:
        assert experiments.get(study.name) is study and study.quick and study.claims
        names = [arm.name for arm in study.arms]
        assert all(arm in names for claim in study.claims for arm in claim.arms())


def _fine_tuning_config(arm="frozen-b4", limit=300):
    exp = experiments.get("fine-tuning-bn")
    return experiments.trial_config(exp, exp.arm(arm), 1, limit=limit)


def test_class_subsets_and_the_few_label_training_set(fashion_mnist):
    config = _fine_tuning_config(limit=None)
    arrays, _ = recipe.load_data(config, fashion_mnist)
    (x, y), (_, yv), (_, yt) = arrays["train"], arrays["val"], arrays["test"]
    assert len(x) == 500 and x.shape[1:] == (28, 28, 1)
    for labels in (y, yv, yt):
        assert set(np.unique(labels)) == {5, 6, 7, 8, 9}
    source = pretrain.source_config(config)
    assert source["split"]["classes"] == [0, 1, 2, 3, 4] and "train" not in source["split"]
    assert {k for k in source["model"]} == {"name", "norm"}  # plain BN, every weight trained


def test_fine_tuning_starts_from_the_cached_source_weights_with_a_fresh_head(
        fashion_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BNLAB_DATA_DIR", str(fashion_mnist))
    config = _fine_tuning_config()
    trained = []
    real = recipe.train_source

    def counted(source):
        trained.append(source["seed"])
        return real(source)

    monkeypatch.setattr(recipe, "train_source", counted)
    first = recipe.compile_model(config)
    again = recipe.compile_model(_fine_tuning_config("train-mode-b4"))
    assert trained == [1]  # the second arm of the seed read the cache
    assert pretrain.cache_path(pretrain.source_config(config)).exists()
    for a, b in zip(first.layers[:-1], again.layers[:-1]):
        for u, v in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(u, v)
    fresh = models.build("study-cnn", norm="scratch", seed=1)
    for u, v in zip(first.layers[-1].get_weights(), fresh.layers[-1].get_weights()):
        np.testing.assert_array_equal(u, v)  # the head: the seed's initialization, not the source's
    # restatistics: the frozen BN's statistics become PreciseBN's on the target images
    restats = recipe.compile_model(_fine_tuning_config("restats-b4"))
    x = recipe.load_data(config)[0]["train"][0]
    check = recipe.compile_model(_fine_tuning_config("train-mode-b4"))
    found = precise.collect(check, x, batch_size=min(pretrain.RESTATISTICS_BATCH, len(x)))
    for layer, (_, mean, variance) in zip(precise.bn_layers(restats), found):
        assert not layer.trainable
        np.testing.assert_allclose(precise.moving_statistics(layer)[0], mean, rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(precise.moving_statistics(layer)[1], variance, rtol=1e-4)


def _quick(tmp_path, name, *extra):
    out = tmp_path / name
    store = tmp_path / "studies.sqlite"
    assert main("run", name, "--quick", "--quiet", "--store", str(store), "--out", str(out),
                *extra) == 0
    report = (out / "report.md").read_text()
    assert "Did the paper's shape appear?" in report
    assert (out / "trials.csv").read_text().count("\n") > 2
    return out, report, store


@pytest.mark.slow
def test_dropout_variance_shift_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "dropout-variance-shift", "--limit", "500")
    assert (out / "variance_shift.png").stat().st_size > 5000
    assert "| … PreciseBN, dropout off (remedy) | 2 |" in report
    with Store(store) as s:
        results = {(t.arm, t.seed): t.results for t in s.trials("dropout-variance-shift")}
    for seed in (1, 2):
        assert len(results[("before-bn", seed)]["variance_shifts"]) == 4


@pytest.mark.slow
def test_only_bn_trainable_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, store = _quick(tmp_path, "only-bn-trainable", "--limit", "500", "--steps",
                                "8")
    assert (out / "only_bn.png").stat().st_size > 5000
    with Store(store) as s:
        counts = {t.arm: t.results["params_trainable"] for t in s.trials("only-bn-trainable")}
    assert counts["bn-only"] == counts["two-per-channel"] == 224


@pytest.mark.slow
def test_fine_tuning_bn_quick_end_to_end(tmp_path, fashion_mnist, monkeypatch):
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path / "cache"))
    out, report, store = _quick(tmp_path, "fine-tuning-bn", "--limit", "200", "--steps", "8",
                                "--arms", "train-mode-b4,frozen-b4,restats-b4")
    assert (out / "fine_tuning.png").stat().st_size > 5000
    assert "Recommendation at fine-tuning batch 4" in report
    assert len(list((tmp_path / "cache" / "pretrained").glob("*.npz"))) == 2  # one per seed

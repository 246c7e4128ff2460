"""The literature studies of issue 18 (scale-invariance, depth-at-init, learning-rate-range):
their declarations, and each one's quick form end to end on real Fashion-MNIST images, down to
the verdict table, the per-trial CSV and the study's figure."""

import csv
import math

import numpy as np
import pytest

from bnlab.cli import main as cli_main
from bnlab.lab import experiments, literature
from bnlab.lab.literature import depth_at_init, learning_rate_range, measures, scale_invariance
from bnlab.results import learning_rate_range as lr_section
from bnlab.results.store import Store


def main(*argv):
    return cli_main(list(argv))


def test_the_studies_are_registered_with_quick_forms_and_claims():
    for study in (scale_invariance.STUDY, depth_at_init.STUDY, learning_rate_range.STUDY):
        assert study in literature.STUDIES and experiments.get(study.name) is study
        assert study.quick and study.claims
        assert set(study.quick["arms"]) <= {a.name for a in study.arms}


def test_scale_invariance_arms_carry_their_optimizer_arguments():
    exp = experiments.get("scale-invariance")
    config = experiments.trial_config(exp, exp.arm("lr1-wd"), 1)
    assert config["optimizer"] == {"name": "TracedSGD", "learning_rate": 1.0,
                                   "weight_decay": 5e-4}
    rescaled = experiments.trial_config(exp, exp.arm("rescaled"), 1)["optimizer"]
    assert rescaled["invariant_scale"] ** 2 * rescaled["learning_rate"] == pytest.approx(1.0)
    # the seed experiments' arms give the optimizer nothing new: their trial ids are unchanged
    seed = experiments.get("bn-placement")
    assert experiments.trial_config(seed, seed.arms[0], 1)["optimizer"] == seed.optimizer


def test_depth_sweep_measures_the_same_seeds_nets(fashion_mnist):
    """init_gradients on a depth-10 trial: its depth-5 value is the first-layer gradient of the
    depth-5 net built from the same seed, on the same first batch."""
    from bnlab.lab import recipe

    exp = experiments.get("depth-at-init")
    config = experiments.trial_config(exp, exp.arm("bn-d5"), 2, limit=300)
    deeper = {**config, "model": {**config["model"], "depth": 10}}
    arrays, _ = recipe.load_data(config)
    found = measures.init_gradients(None, deeper, arrays)
    assert set(found) == {"log_init_gradient_first_d5", "log_init_gradient_first_d10",
                          "init_gradient_norms"}
    assert len(found["init_gradient_norms"]) == 11  # 10 hidden kernels and the output's
    alone = measures.init_gradients(None, config, arrays)
    assert alone["log_init_gradient_first_d5"] == pytest.approx(
        found["log_init_gradient_first_d5"], rel=1e-5)
    assert math.log(alone["init_gradient_norms"][0]) == pytest.approx(
        found["log_init_gradient_first_d5"], rel=1e-5)


def test_range_verdicts_on_known_grids():
    """The range claim on synthetic grids: BN trains at 6 grid points, none at 2 (2 decades
    wider): "wider" and "by a decade" appear; reversed, both are contradicted."""
    from types import SimpleNamespace as NS

    def arms(bn_points, none_points):
        out = []
        for group, points in (("bn", bn_points), ("none", none_points)):
            for i, rate in enumerate(learning_rate_range.RATES):
                trials = [NS(seed=s, results={"val_accuracy": 0.8 if i < points + (s == 3)
                                              else 0.1}) for s in (1, 2, 3)]
                out.append(NS(name=f"{group}{i}", group=group, x=rate, trials=trials,
                              histories=[[]] * 3))
        return out

    claims = learning_rate_range.RANGE_CLAIMS
    wider = lr_section.range_verdicts(arms(6, 2), claims, lambda r: r["val_accuracy"] >= 0.5)
    assert [v.verdict for v in wider] == ["appeared", "appeared"]
    assert wider[0].mean == pytest.approx(2.0)
    narrower = lr_section.range_verdicts(arms(2, 6), claims, lambda r: r["val_accuracy"] >= 0.5)
    assert [v.verdict for v in narrower] == ["contradicted", "contradicted"]


def _quick(tmp_path, name, *extra):
    out = tmp_path / name
    store = tmp_path / "studies.sqlite"
    assert main("run", name, "--quick", "--quiet", "--store", str(store), "--out", str(out),
                *extra) == 0
    report = (out / "report.md").read_text()
    assert report.count("## Did the paper's shape appear?") == 1
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, report, rows, store


@pytest.mark.slow
def test_scale_invariance_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, rows, store = _quick(tmp_path, "scale-invariance", "--steps", "30",
                                      "--limit", "1000", "--arms", "lr0.1,rescaled")
    assert (out / "weight_norms.png").stat().st_size > 5000
    assert "## Study: the weight norm in front of BN" in report
    assert "predict the same class for" in report
    assert {r["arm"] for r in rows} == {"lr0.1", "rescaled"}
    assert all(0 <= float(r["identity_residual_p99"]) < 1 for r in rows)
    with Store(store) as s:
        trial = next(t for t in s.trials("scale-invariance") if t.arm == "lr0.1")
    w = trial.results["w_squared"]
    assert trial.results["w_squared_steps"][-1] == 30 and all(np.diff(w) > 0)  # no decay: grows


@pytest.mark.slow
def test_depth_at_init_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, rows, _ = _quick(tmp_path, "depth-at-init")
    assert (out / "gradient_vs_depth.png").stat().st_size > 5000
    assert "## Study: gradients at initialization against depth" in report
    assert f"{depth_at_init.RATE:.3f}" in report
    assert {r["arm"] for r in rows} == {"bn-d5", "none-d5"}
    assert all(math.isfinite(float(r["log_init_gradient_first_d5"])) for r in rows)
    # measured on each seed's own net (the seeds train together; each is rebuilt from its seed)
    assert len({r["log_init_gradient_first_d5"] for r in rows if r["arm"] == "bn-d5"}) == 2


@pytest.mark.slow
def test_learning_rate_range_quick_end_to_end(tmp_path, fashion_mnist):
    out, report, rows, _ = _quick(tmp_path, "learning-rate-range")
    assert (out / "accuracy_vs_lr.png").stat().st_size > 5000
    assert "## Study: the range of learning rates that train" in report
    assert "wider with BN by at least a decade" in report
    assert len(rows) == 8 and all(-50 <= float(r["test_points_over_bar"]) <= 50 for r in rows)


def test_scale_invariance_claims_name_its_arms():
    names = {a.name for a in scale_invariance.STUDY.arms}
    assert all(set(c.arms()) <= names for c in scale_invariance.CLAIMS)


def test_relu_mlp_takes_depth_and_units_and_others_refuse_them():
    from bnlab import models
    from bnlab.errors import UserError

    model = models.build("relu-mlp", norm="keras", depth=3, units=16, seed=0)
    dense = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert [d.units for d in dense] == [16, 16, 16, 10]
    assert not any(d.use_bias for d in dense[:3])  # a norm follows each
    with pytest.raises(UserError, match="fixed size"):
        models.build("mlp", depth=3)
    with pytest.raises(UserError, match="positive int"):
        models.build("relu-mlp", depth=0)

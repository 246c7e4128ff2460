"""Every shipped example (examples/*.toml) runs through the command line, at a --limit that no
batch size of it divides: an epoch's last batch is smaller, and so is a Ghost BN arm's last
virtual batch."""

from pathlib import Path

import pytest

from bnlab import cli
from bnlab.lab import experiment_file
from bnlab.results.store import Store

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))
LIMIT = 70  # training, validation and test images


def covering_arms(experiment):
    """The arms that bring a norm or a batch size not seen in an earlier arm: every norm and
    every batch size of the example runs, at a fraction of a grid's cost."""
    seen, names = set(), []
    for arm in experiment.arms:
        kinds = {("norm", arm.model.get("norm", "keras")),
                 ("batch", arm.training.get("batch_size", experiment.batch_size))}
        if kinds - seen:
            seen |= kinds
            names.append(arm.name)
    return names


def test_the_limit_divides_no_batch_size_of_an_example():
    assert covering_arms(experiment_file.load(EXAMPLES[1])) == [
        "keras-4", "keras-32", "group-4", "layer-4"]  # of the grid's six
    for path in EXAMPLES:
        experiment = experiment_file.load(path)
        for arm in experiment.arms:
            batch = arm.training.get("batch_size", experiment.batch_size)
            assert LIMIT > batch and LIMIT % batch, (path.name, arm.name)
            ghost = (arm.model.get("norm_options") or {}).get("virtual_batch_size")
            assert ghost is None or (LIMIT % batch) % ghost, (path.name, arm.name)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs_at_a_limit_no_batch_size_divides(path, tmp_path, monkeypatch, capsys,
                                                             fashion_mnist):
    monkeypatch.chdir(tmp_path)
    experiment = experiment_file.load(path)
    arms = covering_arms(experiment)
    assert cli.main(["run", str(path), "--limit", str(LIMIT), "--epochs", "1", "--seeds", "1",
                     "--arms", ",".join(arms), "--quiet", "--data-dir", str(fashion_mnist)]) == 0
    assert f"report: runs/{experiment.name}/report.md" in capsys.readouterr().out
    with Store("runs/bnlab.sqlite") as store:
        trials = store.trials(experiment.name)
        assert sorted(t.arm for t in trials) == sorted(arms)
        assert all(len(store.history(t.id)) == 1 for t in trials)

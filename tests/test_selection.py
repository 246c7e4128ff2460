"""Which trials of the store make up a run (bnlab.lab.selection): the report's and export's."""

import itertools

import pytest

from bnlab.errors import UserError
from bnlab.lab import experiments, selection
from bnlab.results import store as store_module
from bnlab.results.store import Store

EXP = experiments.get("bn-placement")


def config(arm, seed, limit):
    return experiments.trial_config(EXP, EXP.arm(arm), seed, epochs=1, limit=limit,
                                    dataset="fashion_mnist", backend="jax")


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """The store's clock a second later at every call: finished_at orders the runs."""
    seconds = itertools.count()
    monkeypatch.setattr(store_module, "_now", lambda: f"2026-01-01T{next(seconds):06d}")


def finish(store, config):
    store.finish(store.start(config), [], {"test_accuracy": 0.5})


def test_the_latest_run_is_the_newest_trial_settings(tmp_path):
    quick = [config(arm, seed, 500) for arm in ("baseline", "bn-after") for seed in (1, 2)]
    full = [config("baseline", seed, None) for seed in (1, 2, 3)]
    with Store(tmp_path / "s.sqlite") as store:
        for c in quick + full:
            finish(store, c)
        chosen = selection.trials(store, EXP)
        assert {(t.arm, t.seed, t.config["limit"]) for t in chosen} == {
            ("baseline", s, None) for s in (1, 2, 3)}
        finish(store, quick[0])  # rerun: the quick settings are the newest again
        assert len(selection.trials(store, EXP)) == len(quick)
        # after a run: its own configs, whatever else is newer
        assert [t.id for t in selection.trials(store, EXP, full[:1])] == [store.trial_id(full[0])]
        spec = selection.report_spec(EXP, selection.trials(store, EXP), command=True)
        assert "--limit 500" in spec["command"] and "--seeds 2" in spec["command"]


def test_another_experiment_of_the_same_name_is_never_pooled(tmp_path):
    other = dict(config("baseline", 1, 500), batch_size=7)  # defined otherwise
    with Store(tmp_path / "s.sqlite") as store:
        assert selection.trials(store, EXP) == []
        finish(store, other)
        with pytest.raises(UserError, match="another configuration"):
            selection.trials(store, EXP)
        finish(store, config("baseline", 1, 500))
        assert [t.config["batch_size"] for t in selection.trials(store, EXP)] == [32]

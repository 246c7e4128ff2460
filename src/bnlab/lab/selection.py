"""Which trials of the store make up a run of an experiment, and the report's description of them.

``trials(store, experiment, configs)`` — after ``bnlab run``, the trials of its ``configs``;
otherwise (``bnlab report``, ``bnlab export``) the latest run: the trials that share the settings
of the experiment's most recently finished trial, for a store may hold the same experiment at
several settings (a quick ``--limit`` look and the full run). Trials of another experiment with
the same name (another file, or arms defined otherwise) are never pooled with it
(``experiments.same_configuration``); when they are all the store has, it refuses.

``report_spec(experiment, trials)`` — ``experiments.as_report_spec`` with the command line that
reproduces the newest of ``trials``; a study's lists only the arms run (its grid has many).
"""

from bnlab.errors import UserError
from bnlab.lab import experiments

# What an arm sets for itself: its model, and in the studies its batch size, with the learning
# rate and steps that go with it (the command line's steps are the experiment's).
ARM_KEYS = ("arm", "seed", "model", "batch_size", "optimizer", "steps", "log_every", "schedule")


def trials(store, experiment, configs=None):
    """The trials a report covers (module docstring), in the store's order."""
    stored = store.trials(experiment.name)
    if configs is not None:
        ids = {store.trial_id(c) for c in configs}
        return [t for t in stored if t.id in ids]
    ours = [t for t in stored if experiments.same_configuration(experiment, t.config)]
    if stored and not ours:
        raise UserError(f"the {len(stored)} trial(s) named {experiment.name!r} in {store.path} "
                        f"were run with another configuration than "
                        f"{experiment.source or 'the built-in experiment'} (another file or version "
                        "with this name); bnlab does not pool them: run this one, or give it its "
                        "own name")
    if not ours:
        return []
    key = settings(experiment, newest(ours).config)
    return [t for t in ours if settings(experiment, t.config) == key]


def newest(trials):
    return max(trials, key=lambda t: t.finished_at or "")


def settings(experiment, config):
    """What makes trials one run: the config less what an arm sets for itself (``ARM_KEYS``), and
    the command line that ran it; a trial of an arm the experiment no longer has, its config less
    arm, seed and model."""
    if config["arm"] not in {a.name for a in experiment.arms}:
        return {k: v for k, v in config.items() if k not in ("arm", "seed", "model")}
    return {**{k: v for k, v in config.items() if k not in ARM_KEYS},
            "command": experiments.command_line(experiment, config, 0)}


def report_spec(experiment, trials=(), command=False):
    """The report's description of ``trials`` (module docstring); ``command``: with the command
    line that reproduces the newest of them."""
    line = None
    if command and trials:
        line = experiments.command_line(experiment, newest(trials).config,
                                        len({t.seed for t in trials}))
    spec = experiments.as_report_spec(experiment, line)
    if experiment.quick:
        ran = {t.arm for t in trials}
        spec["arms"] = [a for a in spec["arms"] if a["name"] in ran]
    return spec

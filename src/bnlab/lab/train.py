"""Training: one trial on Keras's fit, or the seeds of an arm together (a unit of work).

``FitEngine`` is one seed on Keras's ``fit`` (any backend), the K = 1 engine of the trial loop
(``bnlab.lab.loop``, which owns the schedule, the history rows and the results); ``run_trial``
runs it. Same config, same backend and same seed give the same history: the seed fixes the
initial weights (``bnlab.seeding.set_seed`` before building) and the batch order.

``train_unit`` trains what an executor (``bnlab.lab.executors``) is handed: one trial with
``fit``, or, on the JAX backend, the seeds of an arm together as one vectorized program
(``bnlab.lab.multiseed``). The resumable loop over many trials is ``bnlab.lab.sweep.run_trials``.
"""

import json

import keras
import numpy as np

from bnlab import models
from bnlab.lab import loop, multiseed, recipe
from bnlab.seeding import set_seed
from bnlab.tools import probe as probe_tools


class FitEngine:
    """One trial's model trained with Keras's ``fit``: ``bnlab.lab.loop``'s engine for K = 1
    (every answer an array of one)."""

    def __init__(self, config):
        self.configs, self.k = [config], 1
        set_seed(config["seed"])
        self.model = recipe.compile_model(config)
        self.params = models.count_params(self.model)
        self._probe = None

    def describe(self):
        return {"backend": keras.backend.backend(), "path": "keras-fit"}

    def attach_probe(self, spec, arrays):
        self._probe = probe_tools.ActivationProbe.from_spec(spec, arrays)

    @property
    def probes(self):
        return None if self._probe is None else [self._probe.record]

    def inputs(self, x, y):
        return x, y

    def _fit(self, x, y, batch_size):
        """``fit`` returns its metrics as numbers, which waits for every step (JAX runs steps
        asynchronously)."""
        return self.model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                              callbacks=[self._probe] if self._probe else []).history

    def train_epoch(self, x, y, epoch, batch_size):
        order = recipe.epoch_order(self.configs[0]["seed"], epoch, len(x))
        logs = self._fit(x[order], y[order], batch_size)
        return np.array([logs["loss"][-1]]), np.array([logs["accuracy"][-1]])

    def train_steps(self, x, y, idx):
        self._fit(x[idx[0].ravel()], y[idx[0].ravel()], idx.shape[2])

    def evaluate(self, x, y):
        if len(x) == 0:
            return np.array([np.nan]), np.array([np.nan])
        loss, acc = self.model.evaluate(x, y, batch_size=recipe.EVAL_BATCH_SIZE, verbose=0)
        return np.array([loss]), np.array([acc])

    def evaluate_own(self, x, y):
        return self.evaluate(x[0], y[0])

    def predict(self, x):
        return np.asarray(self.model.predict_on_batch(x))[None]

    def keras_model(self, i):
        return self.model


def run_trial(config, arrays, class_names, *, progress=True, save_models=None):
    """Train and evaluate one trial with ``fit``; returns (history rows, results dict). With
    ``save_models`` (a folder) the trained model is saved there (``loop.model_path``)."""
    [outcome] = loop.run(FitEngine(config), arrays, class_names, progress=progress,
                         save_models=save_models)
    return outcome


# ----------------------------------------------------------------------------------------------
# units of work


PATHS = ("auto", "together", "fit")


def trains_together(config, path):
    """Whether ``path`` trains ``config``'s seeds together (``bnlab.lab.multiseed``): always with
    ``"together"`` on JAX, with ``"auto"`` where ``multiseed.supported`` (the dense models), never
    with ``"fit"``."""
    if path == "together":
        return keras.backend.backend() == "jax"
    return path == "auto" and multiseed.supported(config)


def load_datasets(configs, data_dir=None):
    """Every dataset ``configs`` train on, keyed by ``recipe.data_key`` (the executor's cache)."""
    datasets = {}
    for config in configs:
        key = recipe.data_key(config)
        if key not in datasets:
            datasets[key] = recipe.load_data(config, data_dir)
    return datasets


def train_unit(group, together, datasets, data_dir=None, progress=True, save_models=None):
    """Train one unit: the seeds of ``group`` together, or its one trial with ``fit``; returns one
    (history, results) per config. ``datasets`` is a cache of loaded data, filled as needed; with
    ``save_models`` (a folder) each trained model is saved there."""
    key = recipe.data_key(group[0])
    if key not in datasets:
        datasets[key] = recipe.load_data(group[0], data_dir)
    arrays, class_names = datasets[key]
    if together:
        return multiseed.run_group(group, arrays, class_names, progress=progress,
                                   save_models=save_models)
    return [run_trial(config, arrays, class_names, progress=progress, save_models=save_models)
            for config in group]


# The most seeds one unit trains together. The driver claims a unit's trials when it starts the
# unit (``bnlab.lab.sweep``), so a run of many seeds holds at most this many of an arm's trials
# before it has trained them, and the program's memory, which grows with K, stays bounded.
MAX_TOGETHER = 24


def work_units(configs, path):
    """What is trained at once: the seeds of an arm together where ``multiseed`` applies (configs
    that differ only in their seed, in first-seen order, ``MAX_TOGETHER`` at most), every other
    trial alone; the units with the most seed-steps first, so that processes sharing a run (or
    Ray's workers) end together rather than one waiting for the last long unit."""
    groups = {}
    for config in configs:
        if trains_together(config, path):
            key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        else:
            key = json.dumps(config, sort_keys=True)
        groups.setdefault(key, []).append(config)
    units = [group[start:start + MAX_TOGETHER] for group in groups.values()
             for start in range(0, len(group), MAX_TOGETHER)]
    return sorted(units, key=lambda unit: -len(unit) * recipe.optimizer_steps(unit[0]))  # stable

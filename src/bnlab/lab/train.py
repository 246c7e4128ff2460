"""Training: one trial from its config, or the seeds of an arm together (a unit of work).

``run_trial(config, dataset) -> (history, results)`` builds the model, trains it with Keras's
``fit`` (epoch experiments) or in chunks of steps (seed 003's step experiment), and evaluates it.
Same config, same backend and same seed give the same history: the seed fixes the initial weights
(``keras.utils.set_random_seed`` before building) and the batch order.

``train_unit`` trains what an executor (``bnlab.lab.executors``) is handed: one trial with
``fit``, or, on the JAX backend, the seeds of an arm together as one vectorized program
(``bnlab.lab.multiseed``). The resumable loop over many trials is ``bnlab.lab.sweep.run_trials``.
"""

import json
import time

import keras
from tqdm.auto import tqdm

from bnlab import models
from bnlab.lab import measure, multiseed, recipe
from bnlab.lab.runtime import configure_xla, enable_compilation_cache  # noqa: F401  (bench/'s)
from bnlab.tools import probe as probe_tools


# ----------------------------------------------------------------------------------------------
# one trial on Keras's fit (any backend)


def _evaluate(model, x, y):
    if len(x) == 0:
        return float("nan"), float("nan")
    loss, acc = model.evaluate(x, y, batch_size=recipe.EVAL_BATCH_SIZE, verbose=0)
    return float(loss), float(acc)


def _fit_epochs(model, config, arrays, bar, callbacks=()):
    """``fit`` one epoch at a time, each on the training images in ``recipe.epoch_order``, then
    evaluate. An epoch's seconds are its training alone: ``fit`` returns its metrics as numbers,
    which waits for every step (JAX runs steps asynchronously), and validation runs after."""
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    rows, seconds = [], []
    for epoch in range(config["epochs"]):
        order = recipe.epoch_order(config["seed"], epoch, len(x))
        start = time.perf_counter()
        logs = model.fit(x[order], y[order], batch_size=config["batch_size"], epochs=1,
                         shuffle=False, verbose=0, callbacks=list(callbacks)).history
        seconds.append(time.perf_counter() - start)
        row = {"epoch": epoch + 1, "step": None, "seconds": float(sum(seconds)),
               "loss": float(logs["loss"][-1]), "accuracy": float(logs["accuracy"][-1])}
        if len(xv):
            row["val_loss"], row["val_accuracy"] = _evaluate(model, xv, yv)
            bar.set_postfix(val_acc=f"{row['val_accuracy']:.4f}")
        rows.append(row)
        bar.update(1)
    return rows, recipe.epoch_timing(seconds)


def _fit_steps(model, config, arrays, bar, callbacks=()):
    """Seed 003's loop: training-batch metrics every 25 steps, validation every 100 (and the test
    split's there too where ``measure.scores_test_curve``)."""
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    every_batch = config["log_every"]["batch"]
    every_val = config["log_every"]["validation"]
    order = recipe.step_order(len(x), config["batch_size"], config["steps"], config["seed"])

    def validation():
        row = dict(zip(("val_loss", "val_accuracy"), _evaluate(model, xv, yv)))
        if measure.scores_test_curve(config):
            row.update(zip(("test_loss", "test_accuracy"), _evaluate(model, *arrays["test"])))
        return row

    rows = [{"epoch": None, "step": 0, "seconds": 0.0, **validation()}]
    train_seconds = 0.0
    for start in range(0, len(order), every_batch):
        chunk = order[start:start + every_batch]
        t0 = time.perf_counter()
        model.fit(x[chunk.ravel()], y[chunk.ravel()], batch_size=config["batch_size"], epochs=1,
                  shuffle=False, verbose=0, callbacks=list(callbacks))
        train_seconds += time.perf_counter() - t0
        step = start + len(chunk)
        row = {"epoch": None, "step": step, "seconds": train_seconds}
        if recipe.validation_due(step, len(chunk), every_val, len(order)):
            row.update(validation())
            bar.set_postfix(val_acc=f"{row['val_accuracy']:.4f}")
        else:  # the last training batch, scored in inference mode as the seed does
            row["batch_loss"], row["batch_accuracy"] = _evaluate(model, x[chunk[-1]], y[chunk[-1]])
        rows.append(row)
        bar.update(len(chunk))
    timing = {"train_seconds": train_seconds,
              "seconds_per_step": train_seconds / max(len(order), 1)}
    return rows, timing


def run_trial(config, arrays, class_names, *, progress=True, save_models=None):
    """Train and evaluate one trial; returns (history rows, results dict). With ``save_models``
    (a folder) the trained model is saved there (``recipe.model_path``) and results name it."""
    labelled = {k: (x, recipe.labels(config, y)) for k, (x, y) in arrays.items()}
    keras.utils.set_random_seed(config["seed"])
    model = recipe.compile_model(config)
    total, trainable, non_trainable = models.count_params(model)
    probe = None
    if config.get("probe"):  # the activation probe of bnlab.tools.probe, on a fixed batch
        probe = probe_tools.ActivationProbe.from_spec(config["probe"], labelled)
    callbacks = [probe] if probe else []
    length = config.get("steps") or config["epochs"]
    desc = f"{config['arm']} seed {config['seed']}"
    with tqdm(total=length, desc=desc, unit="step" if config.get("steps") else "epoch",
              disable=not progress, leave=False, dynamic_ncols=True) as bar:
        if config.get("steps"):
            history, timing = _fit_steps(model, config, labelled, bar, callbacks)
        else:
            history, timing = _fit_epochs(model, config, labelled, bar, callbacks)
    val_loss, val_acc = _evaluate(model, *labelled["val"])
    test_loss, test_acc = _evaluate(model, *labelled["test"])
    results = {
        "val_loss": val_loss, "val_accuracy": val_acc,
        "test_loss": test_loss, "test_accuracy": test_acc,
        "params_total": total, "params_trainable": trainable,
        "params_non_trainable": non_trainable,
        "backend": keras.backend.backend(), "path": "keras-fit",
        **timing,
    }
    if probe:
        results["probe"] = probe.record.as_dict()
    x_test, y_test = arrays["test"]
    if "predictions" in config.get("extras", ()):
        results["predictions"] = recipe.describe_predictions(
            model.predict(x_test[:3], verbose=0), y_test, class_names)
    if "single_sample" in config.get("extras", ()):
        results["single_sample_accuracy"] = float(recipe.single_sample_accuracy(
            model.predict_on_batch, x_test, y_test))
    if save_models is not None:
        results["model_path"] = recipe.save_model(model, recipe.model_path(save_models, config))
    results.update(measure.after(model, config, labelled))  # last: it may change the model
    return history, results


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
        return _run_group(group, arrays, class_names, progress, save_models)
    return [run_trial(config, arrays, class_names, progress=progress, save_models=save_models)
            for config in group]


def work_units(configs, path):
    """What is trained at once: the seeds of an arm together where ``multiseed`` applies (configs
    that differ only in their seed, in first-seen order), every other trial alone."""
    groups = {}
    for config in configs:
        if trains_together(config, path):
            key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
        else:
            key = json.dumps(config, sort_keys=True)
        groups.setdefault(key, []).append(config)
    return list(groups.values())


def _run_group(configs, arrays, class_names, progress, save_models):
    config = configs[0]
    seeds = ", ".join(str(c["seed"]) for c in configs)
    with tqdm(total=config.get("steps") or config["epochs"], leave=False, dynamic_ncols=True,
              desc=f"{config['arm']} seeds {seeds}", disable=not progress,
              unit="step" if config.get("steps") else "epoch") as bar:
        return multiseed.run_group(configs, arrays, class_names, bar, save_models)

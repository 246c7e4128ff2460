"""A trial's loop, for K ≥ 1 seeds of one arm: its schedule, history rows, timing, results and
extras, whatever trains it.

``run(engine, configs, arrays, class_names)`` drives an engine through one small interface; the
two engines are Keras's ``fit`` for one seed (``bnlab.lab.train.FitEngine``, any backend) and the
K seeds as one vectorized JAX program (``bnlab.lab.multiseed.SeedGroup``). An engine holds the K
seeds' models and answers, every answer per seed (arrays of length K):

    k, configs, params              seeds, their configs, (total, trainable, non-trainable)
    describe()                      the results' fields naming the path (backend, path, ...)
    inputs(x, y)                    the training images as the engine trains on them
    train_epoch(x, y, epoch, B)     one epoch of each seed in ``recipe.epoch_order``, the last
                                    batch smaller: (loss, accuracy) averaged over its examples
    train_steps(x, y, idx)          the steps idx (K, S, B), finished when it returns
    evaluate(x, y)                  inference-mode (loss, accuracy) on the same images
    evaluate_own(x, y)              the same, each seed on its own images x (K, B, ...)
    predict(x)                      inference-mode outputs (K, N, classes)
    attach_probe(spec, arrays)      record ``bnlab.tools.probe``'s activation probe; ``probes``
    keras_model(i)                  seed i's state in a Keras model (saved; measured after)

The schedule: an epoch trial trains epoch by epoch and validates after each; a step trial (seed
003's) trains in chunks of ``log_every["batch"]`` steps, logging the chunk's last training batch
(scored in inference mode, as the seed does) or, where ``validation_due``, the validation split's
metrics (and the test split's where ``measure.scores_test_curve``). A row's seconds are training
alone, summed. Reported training metrics follow Keras's ``fit``: averages over the epoch's
examples, taken while training.
"""

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bnlab import paths
from bnlab.lab import measure, recipe
from bnlab.results.store import Store


def run(engine, arrays, class_names, *, progress=False, save_models=None):
    """Train the engine's K seeds and evaluate them; returns one (history rows, results) per
    config. ``arrays``: split -> (x, integer labels); with ``save_models`` (a folder) each trained
    model is saved there (``model_path``) and its results name it."""
    configs = engine.configs
    config = configs[0]
    labelled = {k: (x, recipe.labels(config, y)) for k, (x, y) in arrays.items()}
    if config.get("probe"):  # the activation probe of bnlab.tools.probe, on a fixed batch
        engine.attach_probe(config["probe"], labelled)
    seeds = ", ".join(str(c["seed"]) for c in configs)
    desc = f"{config['arm']} seed{'s' if engine.k > 1 else ''} {seeds}"
    with tqdm(total=config.get("steps") or config["epochs"], desc=desc, leave=False,
              unit="step" if config.get("steps") else "epoch", disable=not progress,
              dynamic_ncols=True) as bar:
        record = measure.during(configs, labelled)  # e.g. the smoothness study's, every chunk
        if config.get("steps"):
            histories, timing = _steps(engine, config, labelled, bar, record)
        elif record is not None:
            raise ValueError("a record during training needs a step trial (steps, log_every)")
        else:
            histories, timing = _epochs(engine, config, labelled, bar)
    val_loss, val_acc = engine.evaluate(*labelled["val"])
    test_loss, test_acc = engine.evaluate(*labelled["test"])
    total, trainable, non_trainable = engine.params
    extras = _extras(engine, config, arrays["test"], class_names)
    results = []
    for i in range(engine.k):
        result = {"val_loss": float(val_loss[i]), "val_accuracy": float(val_acc[i]),
                  "test_loss": float(test_loss[i]), "test_accuracy": float(test_acc[i]),
                  "params_total": total, "params_trainable": trainable,
                  "params_non_trainable": non_trainable, **engine.describe(), **timing,
                  **{key: values[i] for key, values in extras.items()}}
        if engine.probes is not None:
            result["probe"] = engine.probes[i].as_dict()
        if record is not None:
            result.update(record.results(i))
        if save_models is not None:
            result["model_path"] = save_model(engine.keras_model(i),
                                              model_path(save_models, configs[i]))
        if measure.after_wanted(config):  # last: it changes the model's moving statistics
            result.update(measure.after(engine.keras_model(i), configs[i], labelled))
        results.append(result)
    return list(zip(histories, results))


def _scores(engine, x, y, split):
    """[{split_loss, split_accuracy}] per seed."""
    loss, acc = engine.evaluate(x, y)
    return [{f"{split}_loss": float(loss[i]), f"{split}_accuracy": float(acc[i])}
            for i in range(engine.k)]


def _epochs(engine, config, arrays, bar):
    """Epoch by epoch; validation after each. An epoch's seconds are its training alone."""
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    x_in, y_in = engine.inputs(x, y)
    histories, seconds = [[] for _ in range(engine.k)], []
    for epoch in range(config["epochs"]):
        start = time.perf_counter()
        loss, acc = engine.train_epoch(x_in, y_in, epoch, config["batch_size"])
        seconds.append(time.perf_counter() - start)
        validation = _scores(engine, xv, yv, "val") if len(xv) else [{}] * engine.k
        for i, history in enumerate(histories):
            history.append({"epoch": epoch + 1, "step": None, "seconds": float(sum(seconds)),
                            "loss": float(loss[i]), "accuracy": float(acc[i]), **validation[i]})
        if len(xv):
            bar.set_postfix(val_acc=f"{np.mean([v['val_accuracy'] for v in validation]):.4f}")
        bar.update(1)
    return histories, epoch_timing(seconds)


def _steps(engine, config, arrays, bar, record=None):
    """Seed 003's loop: training-batch metrics every ``log_every["batch"]`` steps, validation
    every ``log_every["validation"]`` (and the test split's there too where
    ``measure.scores_test_curve``)."""
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    every_batch = config["log_every"]["batch"]
    every_val = config["log_every"]["validation"]

    def measure_now(step):  # outside the training seconds
        if record is not None:
            record.record(step, engine.keras_model)  # seed i's state, one seed at a time

    idx = np.stack([recipe.step_order(len(x), config["batch_size"], config["steps"], c["seed"])
                    for c in engine.configs])  # (K, steps, B)
    steps = idx.shape[1]

    def validation():
        rows = _scores(engine, xv, yv, "val")
        if measure.scores_test_curve(config):
            for row, test in zip(rows, _scores(engine, *arrays["test"], "test")):
                row.update(test)
        return rows

    histories = [[{"epoch": None, "step": 0, "seconds": 0.0, **row}] for row in validation()]
    x_in, y_in = engine.inputs(x, y)
    train_seconds = 0.0
    measure_now(0)
    for start in range(0, steps, every_batch):
        chunk = idx[:, start:start + every_batch]
        t0 = time.perf_counter()
        engine.train_steps(x_in, y_in, chunk)
        train_seconds += time.perf_counter() - t0
        step = start + chunk.shape[1]
        measure_now(step)
        if validation_due(step, chunk.shape[1], every_val, steps):
            rows = validation()
            bar.set_postfix(val_acc=f"{np.mean([r['val_accuracy'] for r in rows]):.4f}")
        else:  # the chunk's last training batch, scored in inference mode as the seed does
            loss, acc = engine.evaluate_own(x[chunk[:, -1]], y[chunk[:, -1]])
            rows = [{"batch_loss": float(loss[i]), "batch_accuracy": float(acc[i])}
                    for i in range(engine.k)]
        for history, row in zip(histories, rows):
            history.append({"epoch": None, "step": step, "seconds": train_seconds, **row})
        bar.update(chunk.shape[1])
    return histories, {"train_seconds": train_seconds,
                       "seconds_per_step": train_seconds / max(steps, 1)}


def _extras(engine, config, test, class_names):
    """Seed 002's predictions and seed 003's one-at-a-time accuracy, per seed."""
    x, y = test
    extras = {}
    if "predictions" in config.get("extras", ()):
        extras["predictions"] = [describe_predictions(p, y, class_names)
                                 for p in engine.predict(x[:3])]
    if "single_sample" in config.get("extras", ()):
        extras["single_sample_accuracy"] = [
            float(a) for a in single_sample_accuracy(engine.predict, x, y)]
    return extras


def validation_due(step, chunk, every, last):
    """Whether a step trial validates after the chunk of ``chunk`` steps that ends at ``step``:
    when the chunk reached a multiple of ``every`` (even where ``every`` is not a multiple of the
    chunk length), and after the ``last`` step."""
    return step // every > (step - chunk) // every or step == last


def epoch_timing(seconds):
    """An epoch trial's timing from each epoch's training seconds: the first (compiling) epoch
    apart, the mean of the others (of the first when there is one), and the total."""
    later = seconds[1:] or seconds
    return {"first_epoch_seconds": seconds[0], "seconds_per_epoch": float(np.mean(later)),
            "train_seconds": float(sum(seconds))}


def describe_predictions(probabilities, y, class_names):
    """Seed 002's last cell: for each image, its true class, the predicted one, and the class
    probabilities (``probabilities``: (N, classes), the model's inference-mode outputs)."""
    return [{"index": i, "label": class_names[int(y[i])],
             "predicted": class_names[int(np.argmax(p))],
             "probabilities": [round(float(v), 4) for v in p]}
            for i, p in enumerate(np.asarray(probabilities))]


def single_sample_accuracy(predict, x, y, count=100):
    """Seed 003's check: the first ``count`` images fed one at a time, in inference mode.

    ``predict(batch of one)`` returns outputs of shape (..., 1, classes): one model's, or K
    seeds' at once (then the result is one accuracy per seed). With batch statistics a batch of
    one would normalize every activation to β; with population statistics the accuracy matches
    the batched one.
    """
    count = min(count, len(x))
    correct = sum(np.argmax(np.asarray(predict(x[i:i + 1]))[..., 0, :], axis=-1) == int(y[i])
                  for i in range(count))
    return correct / max(count, 1)


def model_path(folder, config):
    """Where ``bnlab run --save-models`` keeps a trial's model: ``folder/ARM-sSEED-ID.keras``, ID
    the trial's id (``Store.trial_id``), so trials of one arm and seed at other settings keep a
    model each; resolved, so the path the store records is found from any working folder."""
    name = f"{paths.check_name(config['arm'], 'arm name')}-s{config['seed']}-" \
           f"{Store.trial_id(config)}.keras"
    return paths.inside(folder, name)


def save_model(model, path):
    """Save ``model`` as a ``.keras`` file, whole or not at all (a temporary file, then renamed),
    where its folder's manifest allows (``bnlab.paths.Manifest``); returns the path as a string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(paths.Manifest(path.parent).write(path.name, model.save, suffix=".keras"))

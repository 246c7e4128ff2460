"""Training: one trial from its config, and the loop that runs many trials into the store.

``run_trial(config, dataset) -> (history, results)`` builds the model, trains it with Keras's
``fit`` (epoch experiments) or in chunks of steps (seed 003's step experiment), and evaluates it.
Same config, same backend and same seed give the same history: the seed fixes the initial weights
(``keras.utils.set_random_seed`` before building) and the batch order.

``run_trials(configs, store, ...)`` is the resumable executor: a trial already finished in the
store is skipped (unless ``force``), every other one is marked running, trained, and then written in
one transaction with its history and results, so an interrupted run leaves nothing marked finished
that did not finish and the next run completes only what is missing.
"""

import time
import traceback

import keras
import numpy as np
from tqdm.auto import tqdm

from bnlab import data as bndata
from bnlab import models

EVAL_BATCH_SIZE = 500  # inference-mode BN makes evaluation independent of the batch size
CONV_MODELS = ("lenet", "deep-cnn")


# ----------------------------------------------------------------------------------------------
# compiled programs


def enable_compilation_cache(path=None):
    """Keep JAX's compiled XLA programs on disk (default: bnlab's cache folder, ``jax/``).

    Every new Keras model compiles its train step and its weight initializers afresh, about 3 s
    for the seed MLPs and 20 s for the deep CNN on two cores. The programs of the same
    architecture are identical whatever the seed, so with this cache the next trial, or the next
    process, loads them instead. No effect on other backends.
    """
    if keras.backend.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path or bndata.cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# ----------------------------------------------------------------------------------------------
# data for one trial


def load_data(config, data_dir=None):
    """The trial's dataset: loaded, split, preprocessed, limited, shaped for its model."""
    ds = bndata.load(config["dataset"], data_dir, preprocessing=config["preprocessing"],
                     **config["split"])
    limit = config.get("limit")
    channel = config["model"]["name"] in CONV_MODELS
    arrays = {}
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if limit:
            x, y = x[:limit], y[:limit]
        arrays[split] = (x[..., None] if channel else x, y)
    return arrays, ds.class_names


def _data_key(config):
    return (config["dataset"], tuple(sorted(config["split"].items())), config["preprocessing"],
            config.get("limit"), config["model"]["name"] in CONV_MODELS)


# ----------------------------------------------------------------------------------------------
# one trial


def compile_model(config):
    """Build and compile the trial's model with its optimizer, loss and accuracy metric."""
    spec = dict(config["model"])
    name = spec.pop("name")
    model = models.build(name, seed=config["seed"], **spec)
    opt = config["optimizer"]
    optimizer = getattr(keras.optimizers, opt["name"])(learning_rate=opt["learning_rate"])
    if models.LOSSES[name] == "sigmoid_cross_entropy":
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss = models.LOSSES[name]
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def _labels_for(model_name, y):
    if models.LOSSES[model_name] == "sigmoid_cross_entropy":
        return np.eye(models.NUM_CLASSES, dtype="float32")[y]
    return y


class _EpochRecorder(keras.callbacks.Callback):
    """Records each epoch's metrics and its training seconds (validation time excluded)."""

    def __init__(self, bar):
        super().__init__()
        self.bar, self.rows, self.epoch_seconds, self.train_seconds = bar, [], [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._eval = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self._eval_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._eval += time.perf_counter() - self._eval_start

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start - self._eval
        self.epoch_seconds.append(seconds)
        self.train_seconds += seconds
        row = {"epoch": epoch + 1, "step": None, "seconds": self.train_seconds}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        self.bar.update(1)
        if "val_accuracy" in row:
            self.bar.set_postfix(val_acc=f"{row['val_accuracy']:.4f}")


def _evaluate(model, x, y):
    if len(x) == 0:
        return float("nan"), float("nan")
    loss, acc = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)
    return float(loss), float(acc)


def _fit_epochs(model, config, arrays, bar):
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    recorder = _EpochRecorder(bar)
    model.fit(x, y, batch_size=config["batch_size"], epochs=config["epochs"], shuffle=True,
              validation_data=(xv, yv) if len(xv) else None, verbose=0, callbacks=[recorder])
    later = recorder.epoch_seconds[1:] or recorder.epoch_seconds
    timing = {"first_epoch_seconds": recorder.epoch_seconds[0],
              "seconds_per_epoch": float(np.mean(later)),
              "train_seconds": recorder.train_seconds}
    return recorder.rows, timing


def _batch_order(n, batch_size, steps, seed):
    """(steps, batch_size) indices: a fresh permutation each pass over the data, as seed 003's
    ``mnist.train.next_batch`` draws them; the last incomplete batch of a pass is dropped."""
    if n < batch_size:
        raise ValueError(f"{n} training images are fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    per_pass = n // batch_size
    passes = -(-steps // per_pass)
    order = [rng.permutation(n)[: per_pass * batch_size] for _ in range(passes)]
    return np.concatenate(order).reshape(-1, batch_size)[:steps]


def _fit_steps(model, config, arrays, bar):
    """Seed 003's loop: training-batch metrics every 25 steps, validation every 100."""
    (x, y), (xv, yv) = arrays["train"], arrays["val"]
    every_batch = config["log_every"]["batch"]
    every_val = config["log_every"]["validation"]
    order = _batch_order(len(x), config["batch_size"], config["steps"], config["seed"])
    val_loss, val_acc = _evaluate(model, xv, yv)
    rows = [{"epoch": None, "step": 0, "seconds": 0.0, "val_loss": val_loss,
             "val_accuracy": val_acc}]
    train_seconds = 0.0
    for start in range(0, len(order), every_batch):
        chunk = order[start:start + every_batch]
        t0 = time.perf_counter()
        model.fit(x[chunk.ravel()], y[chunk.ravel()], batch_size=config["batch_size"], epochs=1,
                  shuffle=False, verbose=0)
        train_seconds += time.perf_counter() - t0
        step = start + len(chunk)
        row = {"epoch": None, "step": step, "seconds": train_seconds}
        if step % every_val == 0 or step == len(order):
            row["val_loss"], row["val_accuracy"] = _evaluate(model, xv, yv)
            bar.set_postfix(val_acc=f"{row['val_accuracy']:.4f}")
        else:  # the last training batch, scored in inference mode as the seed does
            row["batch_loss"], row["batch_accuracy"] = _evaluate(model, x[chunk[-1]], y[chunk[-1]])
        rows.append(row)
        bar.update(len(chunk))
    timing = {"train_seconds": train_seconds,
              "seconds_per_step": train_seconds / max(len(order), 1)}
    return rows, timing


def run_trial(config, arrays, class_names, *, progress=True, position=None):
    """Train and evaluate one trial; returns (history rows, results dict)."""
    model_name = config["model"]["name"]
    labelled = {k: (x, _labels_for(model_name, y)) for k, (x, y) in arrays.items()}
    keras.utils.set_random_seed(config["seed"])
    model = compile_model(config)
    total, trainable, non_trainable = models.count_params(model)
    length = config.get("steps") or config["epochs"]
    desc = f"{config['arm']} seed {config['seed']}"
    with tqdm(total=length, desc=desc, unit="step" if config.get("steps") else "epoch",
              disable=not progress, leave=False, position=position, dynamic_ncols=True) as bar:
        if config.get("steps"):
            history, timing = _fit_steps(model, config, labelled, bar)
        else:
            history, timing = _fit_epochs(model, config, labelled, bar)
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
    if "predictions" in config.get("extras", ()):
        results["predictions"] = _first_predictions(model, arrays["test"], class_names)
    if "single_sample" in config.get("extras", ()):
        results["single_sample_accuracy"] = _single_sample_accuracy(model, arrays["test"])
    return history, results


def _first_predictions(model, test, class_names, count=3):
    """Seed 002's last cell: the class probabilities of the first test images."""
    x, y = test
    probabilities = np.asarray(model.predict(x[:count], verbose=0))
    return [{"index": i, "label": class_names[int(y[i])],
             "predicted": class_names[int(np.argmax(p))],
             "probabilities": [round(float(v), 4) for v in p]}
            for i, p in enumerate(probabilities)]


def _single_sample_accuracy(model, test, count=100):
    """Seed 003's check: the first test images fed one at a time, in inference mode. With batch
    statistics a batch of one would normalize every activation to β; with population statistics
    the accuracy matches the batched one."""
    x, y = test
    count = min(count, len(x))
    correct = 0
    for i in range(count):
        logits = np.asarray(model.predict_on_batch(x[i:i + 1]))  # compiled, inference mode
        correct += int(np.argmax(logits[0]) == int(y[i]))
    return correct / max(count, 1)


# ----------------------------------------------------------------------------------------------
# many trials


def run_trials(configs, store, *, force=False, data_dir=None, progress=True, log=print):
    """Run every trial of ``configs`` not yet finished in ``store``; returns the ids run.

    Interrupting (Ctrl-C) marks the running trial failed and re-raises; a killed process leaves it
    marked running. Either way the next call runs it again, and never a finished one.
    """
    enable_compilation_cache()
    todo = [c for c in configs if force or not store.is_finished(store.trial_id(c))]
    skipped = len(configs) - len(todo)
    if skipped:
        log(f"{skipped} of {len(configs)} trials already finished in {store.path}; "
            f"running the {len(todo)} missing" + (" (use --force to rerun them)" if todo else ""))
    datasets, done = {}, []
    with tqdm(total=len(todo), desc="trials", unit="trial", disable=not progress or not todo,
              dynamic_ncols=True) as bar:
        for config in todo:
            key = _data_key(config)
            if key not in datasets:
                datasets[key] = load_data(config, data_dir)
            arrays, class_names = datasets[key]
            trial_id = store.start(config)
            try:
                history, results = run_trial(config, arrays, class_names, progress=progress)
            except BaseException as exc:
                store.fail(trial_id, "".join(traceback.format_exception_only(exc)).strip()
                           or type(exc).__name__)
                raise
            store.finish(trial_id, history, results)
            done.append(trial_id)
            bar.update(1)
            bar.set_postfix_str(f"{config['arm']} seed {config['seed']}: "
                                f"test acc {results['test_accuracy']:.4f}")
    return done

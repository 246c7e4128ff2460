"""How a trial's config becomes its data, its compiled model, its loss and its batch order.

Shared by both engines of the trial loop (``bnlab.lab.loop``): ``train``'s Keras ``fit`` (any
backend) and ``multiseed``'s K seeds as one vectorized JAX program. Keeping these here is what
makes the two train the same thing: the same initial weights for a seed, the same loss, and the
same batch order.
"""

import json
import math

import keras
import numpy as np

from bnlab import data as bndata
from bnlab import models
from bnlab.errors import UserError
from bnlab.lab import pretrain
from bnlab.seeding import set_seed
from bnlab.tools import scale_invariance

EVAL_BATCH_SIZE = 500  # inference-mode BN makes evaluation independent of the batch size


def load_data(config, data_dir=None):
    """The trial's dataset: loaded, split, preprocessed, limited, shaped for its model.

    Returns ({"train": (x, y), "val": (x, y), "test": (x, y)}, class_names) with integer labels;
    ``--limit N`` keeps the first N images of each split. Two keys of ``split`` choose a subset
    first (the fine-tuning study): ``classes``, only the images of those classes (labels kept),
    and ``train``, only the first N training images of those.
    """
    split = dict(config["split"])
    classes, train_images = split.pop("classes", None), split.pop("train", None)
    ds = bndata.load(config["dataset"], data_dir, preprocessing=config["preprocessing"], **split)
    limit = config.get("limit")
    channel = config["model"]["name"] in models.CONVOLUTIONAL
    arrays = {}
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if classes is not None:
            x, y = x[np.isin(y, classes)], y[np.isin(y, classes)]
        if split == "train" and train_images:
            x, y = x[:train_images], y[:train_images]
        if limit:
            x, y = x[:limit], y[:limit]
        arrays[split] = (x[..., None] if channel else x, y)
    return arrays, ds.class_names


def data_key(config):
    """Configs with equal keys share one loaded dataset."""
    return (config["dataset"], json.dumps(config["split"], sort_keys=True),
            config["preprocessing"], config.get("limit"),
            config["model"]["name"] in models.CONVOLUTIONAL)


def one_hot_labels(config):
    """Seed 003 trains on one-hot labels (sigmoid cross-entropy); the others on class indices."""
    return models.LOSSES[config["model"]["name"]] == "sigmoid_cross_entropy"


def labels(config, y):
    return np.eye(models.NUM_CLASSES, dtype="float32")[y] if one_hot_labels(config) else y


def loss_and_metric(config):
    """The Keras loss (a ``Loss`` object: the mean over the batch) and accuracy metric."""
    if one_hot_labels(config):
        return (keras.losses.BinaryCrossentropy(from_logits=True),
                keras.metrics.CategoricalAccuracy(name="accuracy"))
    return (keras.losses.SparseCategoricalCrossentropy(),
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"))


def learning_rate(config):
    """The trial's learning rate: a float, or with ``config["schedule"]`` (step trials) a Keras
    schedule over its ``steps``:

        {"name": "steps", "at": [f₁, f₂, ...], "factor": γ}   η₀ · γ^k after the fraction f_k of
                                                               the steps (the papers' step decay)
        {"name": "cosine"}                                     η₀ · (1 + cos(π t / steps)) / 2
    """
    rate, schedule = config["optimizer"]["learning_rate"], config.get("schedule")
    if not schedule:
        return rate
    steps = config["steps"]
    if schedule["name"] == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=steps)
    boundaries = [max(1, round(f * steps)) for f in schedule["at"]]
    values = [rate * schedule["factor"] ** k for k in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def compile_model(config):
    """Build (seeded: the seed fixes the initial weights) and compile the trial's model. A model
    spec with ``pretrained`` starts from pretrained weights instead (``bnlab.lab.pretrain``)."""
    spec = dict(config["model"])
    name, pretrained = spec.pop("name"), spec.pop("pretrained", None)
    model = models.build(name, seed=config["seed"], **spec)
    if pretrained is not None:
        pretrain.initialize(model, config, train_source=train_source,
                            train_images=lambda: load_data(config)[0]["train"][0])
    optimizer = make_optimizer(config, model)
    loss, metric = loss_and_metric(config)
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    return model


def train_source(source):
    """Train a fine-tuning trial's source network (``bnlab.lab.pretrain``) with Keras ``fit`` in
    the recipe's batch order; returns its weights, one list of arrays per layer."""
    arrays, _ = load_data(source)
    x, y = arrays["train"]
    set_seed(source["seed"])
    model = compile_model(source)
    for epoch in range(source["epochs"]):
        order = epoch_order(source["seed"], epoch, len(x))
        model.fit(x[order], y[order], batch_size=source["batch_size"], epochs=1,
                  shuffle=False, verbose=0)
    return [[np.asarray(w) for w in layer.get_weights()] for layer in model.layers]


# bnlab's own optimizers: made for one trial's model (``for_trial(config, model, **arguments)``)
OPTIMIZERS = {"TracedSGD": scale_invariance.TracedSGD}


def make_optimizer(config, model):
    """The trial's optimizer: its class name (Keras's, or one of ``OPTIMIZERS``), then its
    arguments (learning_rate, a schedule for Keras's: ``learning_rate(config)``, ...)."""
    opt = dict(config["optimizer"])
    name = opt.pop("name")
    if name in OPTIMIZERS:
        return OPTIMIZERS[name].for_trial(config, model, **opt)
    opt["learning_rate"] = learning_rate(config)
    return getattr(keras.optimizers, name)(**opt)


def epoch_order(seed, epoch, n):
    """The order of the n training images in ``epoch`` (0-based) for ``seed``: every path uses
    it, so a seed's batches are the same whichever path trains it."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def step_order(n, batch_size, steps, seed):
    """(steps, batch_size) indices: a fresh permutation each pass over the data, as seed 003's
    ``mnist.train.next_batch`` draws them; the last incomplete batch of a pass is dropped."""
    if n < batch_size:
        raise UserError(f"{n} training images are fewer than one batch of {batch_size}")
    per_pass = n // batch_size
    passes = -(-steps // per_pass)
    order = [epoch_order(seed, p, n)[: per_pass * batch_size] for p in range(passes)]
    return np.concatenate(order).reshape(-1, batch_size)[:steps]


def optimizer_steps(config, images=60_000):
    """The steps a trial takes: its ``steps``, or its epochs over ``limit`` images (``images``
    where it has none: an estimate that needs no dataset loaded, for ordering work units and
    choosing whether conv steps are unrolled)."""
    if config.get("steps"):
        return config["steps"]
    per_epoch = math.ceil((config.get("limit") or images) / config["batch_size"])
    return (config.get("epochs") or 1) * per_epoch

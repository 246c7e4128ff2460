"""Pretrained initial weights for the fine-tuning study, trained once per seed and cached.

A trial's model spec may carry ``pretrained`` (``bnlab.lab.recipe.compile_model`` calls
``initialize`` and hands it the two things only the recipe knows: how to train the source network
and the trial's training images, so this module stays below the recipe)::

    {"name": "study-cnn", "norm": "scratch", "bn_mode": "frozen",
     "pretrained": {"classes": [0, 1, 2, 3, 4], "epochs": 1, "batch_size": 32,
              "optimizer": {"name": "SGD", "learning_rate": 0.02, "momentum": 0.9},
              "restatistics": False}}

The *source* network is the same architecture with plain BN, every weight trainable, trained
with Keras ``fit`` for ``epochs`` passes over the training images of ``classes`` (the trial's
dataset, split, preprocessing and ``--limit``; its own seed, so every fine-tuning arm of a seed
starts from the same weights). Its weights are cached in bnlab's cache folder under a hash of
that source config (``source_config``), so the arms of a study pretrain once per seed, and a
second run not at all. Every layer but the last takes the source weights; the last (the
classifier head) keeps its fresh initialization, as in transfer learning with a new head.

``restatistics=True`` then re-estimates every BN layer's statistics on the trial's own
(target) training images with PreciseBN (``bnlab.tools.precise``, all of them, every BN layer
in training mode while it runs) before fine-tuning starts.
"""

import hashlib
import json

import numpy as np

from bnlab import data as bndata
from bnlab import paths
from bnlab.tools import precise

RESTATISTICS_BATCH = 50


def source_config(config):
    """The config of the source network that a fine-tuning trial ``config`` starts from."""
    init = config["model"]["pretrained"]
    model = {k: v for k, v in config["model"].items()
             if k not in ("pretrained", "train", "bn_mode")}
    split = {k: v for k, v in config["split"].items() if k not in ("classes", "train")}
    return {"dataset": config["dataset"], "split": {**split, "classes": list(init["classes"])},
            "preprocessing": config["preprocessing"], "limit": config.get("limit"),
            "model": model, "optimizer": dict(init["optimizer"]),
            "batch_size": int(init["batch_size"]), "epochs": int(init["epochs"]),
            "seed": int(config["seed"])}


def cache_path(source):
    digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:20]
    return bndata.cache_dir() / "pretrained" / f"{digest}.npz"


def source_weights(config, train_source):
    """The source network's per-layer weights for ``config``: from the cache, else trained by
    ``train_source(source config) -> [[arrays] per layer]`` and cached (written whole or not at
    all)."""
    source = source_config(config)
    path = cache_path(source)
    if path.exists():
        with np.load(path) as stored:
            count = int(stored["layers"])
            return [[stored[f"{i}_{j}"] for j in range(int(stored[f"{i}_n"]))]
                    for i in range(count)]
    weights = train_source(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {"layers": len(weights)}
    for i, layer in enumerate(weights):
        flat[f"{i}_n"] = len(layer)
        flat.update({f"{i}_{j}": w for j, w in enumerate(layer)})
    paths.write_whole(path, lambda temporary: np.savez(temporary, **flat), suffix=".npz")
    return weights


def initialize(model, config, train_source, train_images):
    """Load the source weights into every layer of ``model`` but its head; with
    ``restatistics``, PreciseBN on ``train_images()``, the trial's training images (module
    docstring)."""
    weights = source_weights(config, train_source)
    if len(weights) != len(model.layers):
        raise ValueError(f"the source network has {len(weights)} layers, the model "
                         f"{len(model.layers)}")
    for layer, values in zip(model.layers[:-1], weights[:-1]):
        layer.set_weights(values)
    if config["model"]["pretrained"].get("restatistics"):
        restatistics(model, train_images())


def restatistics(model, x):
    """PreciseBN over all of ``x`` with every BN layer in training mode (frozen ones too: a
    frozen BN would otherwise normalize with the source statistics while the later layers'
    inputs are measured)."""
    layers = precise.bn_layers(model)
    trainable = [layer.trainable for layer in layers]
    batch = min(RESTATISTICS_BATCH, len(x))
    try:
        for layer in layers:
            layer.trainable = True
        precise.precise_bn(model, x, batch_size=batch, progress=False)
    finally:
        for layer, flag in zip(layers, trainable):
            layer.trainable = flag

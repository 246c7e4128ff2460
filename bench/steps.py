"""Steady-state ms per training step of the experiments' arms on ONE side (alternate.py's child).

Alone in a fresh process (a second runtime's threads slowed PyTorch 2.1×: bench/tried.md); per
arm, the median of BLOCKS timed blocks of STEPS[model] × ``--scale`` batches, after a warm-up one,
the arms' blocks interleaved in ABBA order so that one arm's time over another's is paired in time
(bench/method.md). The ``fold`` sides time inference instead (``fold_rows``).
"""

import argparse
import functools
import os
import sys

import bnlab  # noqa: F401  (first: where KERAS_BACKEND is unset, it picks Keras's backend)
import jax
import jax.numpy as jnp
import keras
import numpy as np

from bnlab import models
from bnlab.lab import estimate, experiments, multiseed, recipe, runtime, train
from bnlab.layers import BatchNorm, fast_conv
from bnlab.tools.fold import fold
from common import (KERAS_BACKEND, child_env, emit, interleaved, log, median, run_child,
                    timings, training_block)

EXPERIMENTS = ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn")
BLOCKS = 3  # timed blocks of a side's process, after one warm-up block; its answer is the median
STEPS = {"mlp": 200, "deep-mlp": 200, "lenet": 60, "deep-cnn": 15, "study-cnn": 100}
IMAGES, BATCH = 10_000, 500  # the fold side's
FOLD_MODELS = tuple((name, placement) for name in ("mlp", "deep-mlp", "lenet", "deep-cnn")
                    for placement in ("after", "before"))


def keras_layer(layer):
    """``keras.models.clone_model``'s clone function: bnlab's layers → Keras's own."""
    config = layer.get_config()
    if isinstance(layer, (fast_conv.Conv2D, fast_conv.MaxPooling2D)):  # Keras's of the same name
        config.pop("input_gradient", None)
        return getattr(keras.layers, type(layer).__name__).from_config(config)
    if isinstance(layer, BatchNorm):
        renorm = {k: config[k] for k in ("renorm", "renorm_clipping", "renorm_momentum")}
        return keras.layers.BatchNormalization(axis=layer.axis, momentum=layer.momentum,
                                               epsilon=layer.epsilon, name=layer.name, **renorm)
    return layer.__class__.from_config(config)


def keras_model(config, side):
    """The side's compiled Keras model for a trial ``config``."""
    keras.utils.set_random_seed(config["seed"])
    model = recipe.compile_model(config)
    if side == "bnlab":
        return model
    plain = keras.models.clone_model(model, clone_function=keras_layer)
    loss, metric = recipe.loss_and_metric(config)
    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))
    plain.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    return plain


def keras_block(config, side, x, y):
    model, batch = keras_model(config, side), config["batch_size"]
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)


def scan_block(configs, x, y):
    """(group, block): bnlab's seeds-together path, a block's steps of K seeds in compiled calls."""
    group = multiseed.SeedGroup(configs)
    x_dev, y_dev = jnp.asarray(x, dtype="float32"), jnp.asarray(y)
    batch = configs[0]["batch_size"]
    steps = np.arange(len(x) // batch * batch).reshape(-1, batch)
    idx = np.stack([steps] * len(configs))  # (seeds, steps, batch)

    def block():
        group.train_steps(x_dev, y_dev, idx)
        jax.block_until_ready(group.state)
    return group, block


def bnlab_block(config, x, y, path="auto", seeds=1):
    """(path, block) of bnlab's ``path`` ("auto": the default) for ``seeds`` seeds of ``config``."""
    configs = [dict(config, seed=s) for s in range(1, seeds + 1)]
    if train.trains_together(config, "together" if seeds > 1 else path):
        return f"jax-scan x{seeds}" if seeds > 1 else "jax-scan", scan_block(configs, x, y)[1]
    return "keras-fit", keras_block(config, "bnlab", x, y)


def by_kind(names):
    """``names`` as [(convolutional, [names])], the MLPs first, no empty group."""
    groups = {False: [], True: []}
    for name in names:
        groups[experiments.get(name).model in models.CONVOLUTIONAL].append(name)
    return [(conv, group) for conv, group in groups.items() if group]


def configs(names, arms=None, norm=None):
    """(experiment, arm, config) of ``arms`` (None: all), ``norm`` in place of a BN arm's."""
    for name in names:
        experiment = experiments.get(name)
        for arm in [a for a in experiment.arms if not arms or a.name in arms]:
            length = {"steps": 10} if experiment.steps else {"epochs": 1}
            config = experiments.trial_config(experiment, arm, 1, dataset="fashion_mnist", **length)
            if norm and config["model"].get("norm", "none") != "none":
                config["model"] = {**config["model"], "norm": norm}
            yield experiment.name, arm.name, config


def fold_rows(which, quick):
    """Each seed model, Keras's BN after or before, or folded away: ms per IMAGES ``predict``ed,
    the median of BLOCKS calls (fresh weights: their values do not change the time)."""
    images = 1_000 if quick else IMAGES
    rows = []
    for name, placement in FOLD_MODELS:
        model = models.build(name, norm="keras", placement=placement, seed=0)
        model = fold(model) if which == "folded" else model
        shape = (images, 28, 28) + ((1,) if name in models.CONVOLUTIONAL else ())
        x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
        seconds = median(timings(lambda: model.predict(x, batch_size=BATCH, verbose=0), BLOCKS))
        rows.append({"experiment": name, "arm": placement, "ms": 1000 * seconds * IMAGES / images})
        log(f"{which} {name} {placement}: {rows[-1]['ms']:.0f} ms per {IMAGES} images")
    return rows


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=(*KERAS_BACKEND, "fold:folded", "fold:unfolded"),
                        required=True)
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--arms", help="comma-separated arms (default: all of each experiment)")
    parser.add_argument("--norm", help="every arm with this norm instead (BN arms only)")
    parser.add_argument("--gradient", choices=("autodiff", "closed-form"), default="autodiff")
    parser.add_argument("--seeds", type=int, default=1, help="bnlab: K seeds together")
    parser.add_argument("--scale", type=float, default=1.0, help="× the steps of a block")
    parser.add_argument("--quick", action="store_true", help="3 steps a block: checks it runs")
    args = parser.parse_args(argv)  # its process runs on KERAS_BACKEND[side] (alternate.command)
    if args.side.startswith("fold:"):
        emit({"side": args.side, "rows": fold_rows(args.side[len("fold:"):], args.quick)})
        return
    names = [n for n in args.experiments.split(",") if n]
    kinds = by_kind(names)
    if args.side == "bnlab" and len(kinds) > 1:  # XLA's options differ by kind, once a process
        rows = [row for _, group in kinds for row in run_child(
            "steps.py", [*argv, "--experiments", ",".join(group)], env=child_env())["rows"]]
        emit({"side": args.side, "rows": rows})
        return
    if args.side == "torch":
        import torch
        import torch_models
        torch.set_num_threads(os.cpu_count())
    else:
        if args.side == "bnlab":
            runtime.configure_xla(vectorized=args.seeds > 1, convolutional=any(c for c, _ in kinds))
        runtime.enable_compilation_cache()
    if args.gradient == "closed-form":  # bnlab's models build their BatchNorm with it from here on
        models.BatchNorm = functools.partial(models.BatchNorm, gradient="closed-form")
    rows, blocks = [], []
    arms = [a for a in (args.arms or "").split(",") if a] or None
    for experiment, arm, config in configs(names, arms, args.norm):
        model = config["model"]["name"]
        steps = 3 if args.quick else max(3, round(STEPS[model] * args.scale))
        x, y = training_block(config, steps)
        if args.side == "torch":
            path, block = "torch-eager", torch_models.train_block(config, x, y)
        elif args.side == "bnlab":
            path, block = bnlab_block(config, x, y, seeds=args.seeds)
        else:
            path, block = "keras-fit", keras_block(config, args.side, x, y)
        blocks.append(block)
        rows.append({"experiment": experiment, "arm": arm, "path": path, "steps": steps,
                     "batch_size": config["batch_size"],
                     "macs": estimate.multiply_adds(models.build(model, norm="none"))})
    # every arm's blocks interleaved: an arm's ratio to another is paired in time (method.md)
    for row, seconds in zip(rows, interleaved(blocks, BLOCKS)):
        row["ms"] = 1000 * median(seconds) / row["steps"]
        log(f"{args.side}: {row['experiment']} / {row['arm']}: {row['ms']:.2f} ms/step "
            f"({row['path']})")
    emit({"side": args.side, "rows": rows})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

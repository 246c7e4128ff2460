"""Steady-state ms per training step of the experiments' arms on ONE side (alternate.py's child).

    python bench/steps.py --side bnlab|keras-jax|keras-tf|torch [--help for the options]

One framework alone in a fresh process (a second runtime's threads slowed PyTorch 2.1×:
bench/tried.md). For every arm: one untimed warm-up block, then BLOCKS timed blocks of the same
first STEPS[model] × ``--scale`` batches of the training split; the answer is the median block's ms
per step. What each side trains is said once, for the reader, in report.METHOD.
"""

import argparse
import functools
import os
import sys

from common import BLOCKS, child_env, emit, log, median, run_child, timings, training_block

EXPERIMENTS = ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn")
STEPS = {"mlp": 200, "deep-mlp": 200, "lenet": 60, "deep-cnn": 15, "study-cnn": 100}
SIDES = ("bnlab", "keras-jax", "keras-tf", "torch")
KERAS_BACKEND = {"bnlab": None, "keras-jax": "jax", "keras-tf": "tensorflow", "torch": None}


def keras_layer(layer):
    """``keras.models.clone_model``'s clone function: bnlab's layers → Keras's own."""
    import keras

    from bnlab.layers import BatchNorm
    from bnlab.layers import fast_conv

    config = layer.get_config()
    if isinstance(layer, fast_conv.Conv2D):
        config.pop("input_gradient")
        return keras.layers.Conv2D.from_config(config)
    if isinstance(layer, fast_conv.MaxPooling2D):
        return keras.layers.MaxPooling2D.from_config(config)
    if isinstance(layer, BatchNorm):
        renorm = {k: config[k] for k in ("renorm", "renorm_clipping", "renorm_momentum")}
        return keras.layers.BatchNormalization(axis=layer.axis, momentum=layer.momentum,
                                               epsilon=layer.epsilon, name=layer.name, **renorm)
    return layer.__class__.from_config(config)


def keras_model(config, side):
    """The side's compiled Keras model for a trial ``config``."""
    import keras

    from bnlab.lab import recipe

    keras.utils.set_random_seed(config["seed"])
    model = recipe.compile_model(config)
    if side == "bnlab":
        return model
    plain = keras.models.clone_model(model, clone_function=keras_layer)
    loss, metric = recipe.loss_and_metric(config)
    plain.compile(optimizer=keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer)),
                  loss=loss, metrics=[metric])
    return plain


def keras_block(config, side, x, y):
    model = keras_model(config, side)
    batch = config["batch_size"]
    return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)


def scan_block(configs, x, y):
    """(group, block): bnlab's seeds-together path, the K seeds' steps of a block in compiled
    calls (``multiseed.SeedGroup``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bnlab.lab import multiseed

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
    from bnlab.lab import train

    configs = [dict(config, seed=s) for s in range(1, seeds + 1)]
    if train.trains_together(config, "together" if seeds > 1 and path != "fit" else path):
        return f"jax-scan x{seeds}" if seeds > 1 else "jax-scan", scan_block(configs, x, y)[1]
    return "keras-fit", keras_block(config, "bnlab", x, y)


def by_kind(names):
    """The experiments ``names`` as [(convolutional, [names])], the MLPs first, no empty group
    (``configure_xla`` sets XLA up per process, differently for conv models)."""
    from bnlab.lab import experiments
    from bnlab.models import CONVOLUTIONAL

    groups = {False: [], True: []}
    for name in names:
        groups[experiments.get(name).model in CONVOLUTIONAL].append(name)
    return [(conv, group) for conv, group in groups.items() if group]


def configs(names, arms=None, norm=None):
    """(experiment, arm, config) of the arms named ``arms`` (each experiment's own ones; all when
    None), with ``norm`` in place of the arm's norm (arms without one kept as they are: the
    baselines)."""
    from bnlab.lab import experiments

    for name in names:
        experiment = experiments.get(name)
        for arm in experiment.arms:
            if arms and arm.name not in arms:
                continue
            config = experiments.trial_config(
                experiment, arm, 1, dataset="fashion_mnist",
                **({"steps": 10} if experiment.steps else {"epochs": 1}))
            if norm and config["model"].get("norm", "none") != "none":
                config["model"] = {**config["model"], "norm": norm}
            yield experiment.name, arm.name, config


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--arms", help="comma-separated arms (default: all of each experiment)")
    parser.add_argument("--norm", help="every arm with this norm instead (BN arms only)")
    parser.add_argument("--gradient", choices=("autodiff", "closed-form"), default="autodiff")
    parser.add_argument("--seeds", type=int, default=1, help="bnlab: K seeds together")
    parser.add_argument("--path", choices=("auto", "together"), default="auto")
    parser.add_argument("--scale", type=float, default=1.0, help="× the steps of a block")
    parser.add_argument("--quick", action="store_true", help="3 steps a block: checks it runs")
    args = parser.parse_args(argv)
    wanted = KERAS_BACKEND[args.side]
    if wanted and os.environ.get("KERAS_BACKEND") != wanted:
        parser.error(f"--side {args.side} needs KERAS_BACKEND={wanted}")
    names = [n for n in args.experiments.split(",") if n]
    kinds = by_kind(names)  # importing bnlab picks its default backend where KERAS_BACKEND is unset
    if args.side == "bnlab" and len(kinds) > 1:  # XLA's options differ by kind, once a process
        rows = [row for _, group in kinds for row in run_child(
            "steps.py", [*argv, "--experiments", ",".join(group)], env=child_env())["rows"]]
        emit({"side": args.side, "backend": "jax", "rows": rows})
        return 0
    if args.side == "torch":
        import torch

        import torch_models

        torch.set_num_threads(os.cpu_count())
        backend = "torch-eager"
    else:
        import keras

        from bnlab.lab import runtime

        backend = keras.backend.backend()
        if args.side == "bnlab":
            runtime.configure_xla(vectorized=args.seeds > 1,
                                  convolutional=any(conv for conv, _ in kinds))
        runtime.enable_compilation_cache()
    from bnlab import models
    from bnlab.lab import estimate

    if args.gradient == "closed-form":  # bnlab's models build their BatchNorm with it from here on
        models.BatchNorm = functools.partial(models.BatchNorm, gradient="closed-form")
    rows = []
    arms = [a for a in (args.arms or "").split(",") if a] or None
    for experiment, arm, config in configs(names, arms, args.norm):
        model = config["model"]["name"]
        steps = 3 if args.quick else max(3, round(STEPS[model] * args.scale))
        x, y = training_block(config, steps)
        if args.side == "torch":
            path, block = "torch-eager", torch_models.train_block(config, x, y)
        elif args.side == "bnlab":
            path, block = bnlab_block(config, x, y, args.path, args.seeds)
        else:
            path, block = "keras-fit", keras_block(config, args.side, x, y)
        blocks_ms = [1000 * s / steps for s in timings(block, BLOCKS)]
        row = {"experiment": experiment, "arm": arm, "model": model, "path": path,
               "batch_size": config["batch_size"], "steps": steps, "blocks_ms": blocks_ms,
               "ms": median(blocks_ms),
               "macs": estimate.multiply_adds(models.build(model, norm="none"))}
        log(f"{args.side}: {experiment} / {arm}: {row['ms']:.2f} ms/step ({path})")
        rows.append(row)
    emit({"side": args.side, "backend": backend, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

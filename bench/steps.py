"""Steady-state milliseconds per training step of the experiments' arms on ONE side, in this process.

    python bench/steps.py --side {bnlab,keras-jax,keras-tf,torch} [--experiments a,b]
        [--arms a,b] [--blocks 3] [--quick] [--path auto|together] [--torch-threads N]
        [--jax-first]

The child of bench/alternate.py: one framework alone in a fresh process, so that no other
runtime's thread pool shares the cores with it (the flaw of the old one-process pairing; see
bench/tried.md). For every arm it builds the side's model, trains one untimed warm-up block
(compilation, allocator, caches), then ``--blocks`` timed blocks of the same STEPS[model]
batches, and reports the median block's milliseconds per step. Every side trains the same first
batches of the training split, with the arm's batch size, optimizer and loss.

Sides:
  bnlab      bnlab's default path for one seed, as ``bnlab run --seeds 1`` trains it: the model of
             ``bnlab.lab.recipe.compile_model`` (bnlab's fast_conv layers, the arm's norm) on the
             backend bnlab picks (JAX), XLA's options from ``bnlab.lab.train.configure_xla``, and
             the training loop ``bnlab run`` picks: a block's steps inside one compiled
             ``lax.scan`` (``bnlab.lab.multiseed``, one seed) where ``train.trains_together``
             says so, Keras ``fit`` otherwise. Run this process without KERAS_BACKEND. XLA's
             options differ for conv models, so given both kinds of experiment it times each
             kind in a child process of its own (``by_kind``) and answers for both.
  keras-jax  what a Keras user would write first: the same architecture in Keras's own layers
             (``keras.layers.Conv2D``, ``MaxPooling2D``, ``BatchNormalization`` for every BN arm,
             bnlab's from-scratch BN included), ``fit`` on Keras 3 on JAX with XLA's default
             options. KERAS_BACKEND=jax.
  keras-tf   the same plain Keras model with KERAS_BACKEND=tensorflow.
  torch      the plain PyTorch twin (bench/torch_models.py), eager, a hand loop.
Both Keras sides call ``fit`` once per block (``epochs=1, shuffle=False``): the harness is the
same, only the model and XLA's options differ. JAX's compilation cache is on for both JAX sides
(it shortens compiling, never a step).

``--path together`` times bnlab's seeds-together path (``bnlab run --path together``) for every
arm, the conv models included, instead of the default path's choice; other sides ignore it.

``--jax-first`` and ``--torch-threads`` exist for the experiments of bench/tried.md: with
``--side torch --jax-first`` the process trains a block of bnlab's model on JAX right before each
timed PyTorch block (as the old one-process pairing did), to show what a second runtime costs.

The answer (last stdout line) is JSON: {"side", "backend", "rows": [{experiment, arm, model, path,
batch_size, steps, blocks_ms: [...], ms}]}.
"""

import argparse
import os
import sys
import time

from common import child_env, emit, log, median, run_child, training_block

EXPERIMENTS = ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn")
STEPS = {"mlp": 200, "deep-mlp": 200, "lenet": 60, "deep-cnn": 15,  # ≈ 0.2-0.5 s a block
         "study-cnn": 100}
SIDES = ("bnlab", "keras-jax", "keras-tf", "torch")
KERAS_BACKEND = {"bnlab": None, "keras-jax": "jax", "keras-tf": "tensorflow", "torch": None}


def keras_layer(layer):
    """``keras.models.clone_model``'s clone function: bnlab's layers → Keras's own.

    bnlab.layers.fast_conv's Conv2D / MaxPooling2D are Keras's layers with other gradients (their
    config has one extra key); every batch norm of bnlab becomes ``keras.layers.BatchNormalization``
    with the same momentum and epsilon; all other layers are cloned as they are.
    """
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
        return keras.layers.BatchNormalization(axis=layer.axis, momentum=layer.momentum,
                                               epsilon=layer.epsilon, name=layer.name)
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


def scan_block(config, x, y):
    """bnlab's seeds-together path with one seed: the block's steps in one compiled scan."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bnlab.lab import multiseed

    group = multiseed.SeedGroup([config])
    x_dev, y_dev = jnp.asarray(x, dtype="float32"), jnp.asarray(y)
    batch = config["batch_size"]
    idx = np.arange(len(x) // batch * batch).reshape(1, -1, batch)  # (seeds, steps, batch)

    def block():
        group.train_steps(x_dev, y_dev, idx)
        jax.block_until_ready(group.state)
    return block


def bnlab_block(config, x, y, path="auto"):
    """(path, block) of bnlab's ``path`` ("auto": the default) for one seed of ``config``."""
    from bnlab.lab import train

    if train.trains_together(config, path):  # the choice `bnlab run --path PATH` makes
        return "jax-scan", scan_block(config, x, y)
    return "keras-fit", keras_block(config, "bnlab", x, y)


def torch_block(config, x, y):
    import torch

    import torch_models as tm

    torch.manual_seed(config["seed"])
    model, opt, loss_fn = tm.twin(config)
    xt, yt = tm.tensors(x, y)
    model.train()
    batch = config["batch_size"]

    def block():
        for start in range(0, len(xt), batch):
            tm._step(model, opt, loss_fn, xt[start:start + batch], yt[start:start + batch])
    return block


def time_block(block, blocks, steps, before=None):
    """Milliseconds per step of each of ``blocks`` timed calls, after one untimed warm-up call;
    ``before`` (untimed) runs before each call."""
    block()
    out = []
    for _ in range(blocks):
        if before:
            before()
        start = time.perf_counter()
        block()
        out.append(1000 * (time.perf_counter() - start) / steps)
    return out


def by_kind(names):
    """The experiments ``names`` as [(convolutional, [names])], the MLPs first, no empty group.
    ``bnlab run`` sets XLA up differently for conv models (``bnlab.lab.train.configure_xla``),
    once a process, so the bnlab side times each kind in a process of its own."""
    from bnlab.lab import experiments
    from bnlab.models import CONVOLUTIONAL

    groups = {False: [], True: []}
    for name in names:
        groups[experiments.get(name).model in CONVOLUTIONAL].append(name)
    return [(conv, group) for conv, group in groups.items() if group]


def configs(names, quick, arms=None):
    from bnlab.lab import experiments

    for name in names:
        experiment = experiments.get(name)
        for arm in experiments.select_arms(experiment, arms):
            config = experiments.trial_config(
                experiment, arm, 1, dataset="fashion_mnist",
                **({"steps": 10} if experiment.steps else {"epochs": 1}))
            yield experiment.name, arm.name, config, (3 if quick else STEPS[config["model"]["name"]])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--arms", help="comma-separated arms (default: all; e.g. the "
                        "batch-size study's bn-b2,bn-b8)")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks per arm (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 steps a block: checks it runs")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: the number of cores)")
    parser.add_argument("--path", choices=("auto", "together"), default="auto",
                        help="bnlab's path (default: auto, bnlab run's default)")
    parser.add_argument("--jax-first", action="store_true",
                        help="with --side torch: a block of bnlab's model on JAX (untimed) "
                             "right before each timed PyTorch block, in this process")
    args = parser.parse_args(argv)
    names = [n for n in args.experiments.split(",") if n]
    wanted = KERAS_BACKEND[args.side]
    if wanted and os.environ.get("KERAS_BACKEND") != wanted:
        parser.error(f"--side {args.side} needs KERAS_BACKEND={wanted}")

    import bnlab  # noqa: F401  (picks the default backend when KERAS_BACKEND is unset)
    from bnlab.lab import train

    kinds = by_kind(names)
    if args.side == "bnlab" and len(kinds) > 1:  # XLA's options differ by kind, once a process
        rows = []
        for _, kind_names in kinds:
            rows += run_child("steps.py", [*argv, "--experiments", ",".join(kind_names)],
                              env=child_env())["rows"]
        rows.sort(key=lambda row: names.index(row["experiment"]))  # stable: arms keep their order
        emit({"side": args.side, "backend": "jax", "rows": rows})
        return 0
    backend = "torch-eager"
    if args.side != "torch" or args.jax_first:
        import keras

        backend = keras.backend.backend() if args.side != "torch" else "torch-eager"
        if args.side == "bnlab":
            # one seed, as `bnlab run --seeds 1` sets XLA up for these experiments
            train.configure_xla(vectorized=False, convolutional=any(conv for conv, _ in kinds))
        train.enable_compilation_cache()
    if args.side == "torch":
        import torch

        torch.set_num_threads(args.torch_threads or os.cpu_count())
    rows = []
    arms = [a for a in (args.arms or "").split(",") if a] or None
    for experiment, arm, config, steps in configs(names, args.quick, arms):
        x, y = training_block(config, steps)
        before, path = None, {"torch": "torch-eager"}.get(args.side, "keras-fit")
        if args.side == "torch":
            if args.jax_first:  # the old paired.py's situation: a JAX block right before
                before = keras_block(config, "bnlab", x, y)
                before()  # compiled before the timing
            block = torch_block(config, x, y)
        elif args.side == "bnlab":
            path, block = bnlab_block(config, x, y, args.path)
        else:
            block = keras_block(config, args.side, x, y)
        blocks_ms = time_block(block, args.blocks, steps, before)
        row = {"experiment": experiment, "arm": arm, "model": config["model"]["name"], "path": path,
               "batch_size": config["batch_size"], "steps": steps, "blocks_ms": blocks_ms,
               "ms": median(blocks_ms)}
        log(f"{args.side}: {experiment} / {arm}: {row['ms']:.2f} ms/step")
        rows.append(row)
    emit({"side": args.side, "backend": backend, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

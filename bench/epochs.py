"""Seconds per epoch (or per step) of the experiments' arms on one path, in this process.

    python bench/epochs.py --path {bnlab,keras-tf,torch} --experiment NAME [--arms a,b]
        [--epochs 3] [--steps 125 --chunk 25] [--limit N] [--multi ARM:K [--together]]

Paths:
  bnlab     bnlab's side, through ONE function, :func:`bnlab_epoch_times`: bnlab's default path
            on the backend bnlab picks (JAX; run this process without KERAS_BACKEND), with JAX's
            compilation cache and XLA's options as ``bnlab run`` sets them: the seeds of an MLP
            arm vectorized (``bnlab.lab.multiseed``), one seed with ``bnlab.lab.train.run_trial``.
  keras-tf  ``run_trial`` in a process with KERAS_BACKEND=tensorflow (the seeds'
            stack); the run refuses any other backend.
  torch     the plain PyTorch twin of the model (bench/torch_models.py), eager, with the same
            batch size, optimizer, data and shuffling, data held in memory as float32 tensors.

What is timed:
  epoch experiments  ``--epochs E`` (≥ 2) full epochs over the whole training split (55,000
            images; 48,000 for lenet-bn), every batch including the last partial one. The first
            epoch (tracing, compilation or a load from JAX's compilation cache, warm-up) is
            reported apart; "seconds per epoch" is the mean of epochs 2..E.
  step experiments (deep-cnn)  ``--steps S`` steps of batch 64 in chunks of ``--chunk C`` (bnlab's
            step loop calls ``fit`` once per chunk); the first chunk (compiling) is reported apart;
            "seconds per step" is the time of the other S − C steps divided by S − C.
  The timed runs have NO validation split, so that no validation is ever timed. (An earlier
  bnlab subtracted the validation time from an epoch while JAX still ran that epoch's steps
  asynchronously; ``bnlab.lab.train`` now times ``fit`` alone and validates after.) The test split (evaluated once after
  training, never timed) is cut to 500 images, and the seeds' untimed extras (predictions,
  single-sample accuracy) are off. ``--limit N`` (``--quick`` checks only) cuts the data to N.
  ``--multi ARM:K`` adds K seeds of ARM given to :func:`bnlab_epoch_times` in one call (trained
  together where the default path does, the MLPs; one after another otherwise, or together with
  ``--together``, as ``bnlab run --path together`` trains them).

The answer (last stdout line) is JSON: {"path", "backend", "experiment", "results": [...]}.
"""

import argparse
import math
import os
import sys

from common import emit, log

TEST_CUT = 500


# ----------------------------------------------------------------------------------------------
# THE bnlab side: point this at a faster bnlab path and every bnlab number of `make bench` follows


def bnlab_epoch_times(configs, arrays, class_names, together=False):
    """Train the trials ``configs`` (same experiment and arm; one per seed) on bnlab's path.

    Contract (what bench/run.py reads): ``configs`` are ``bnlab.lab.experiments.trial_config`` dicts
    with ``epochs`` (≥ 2) or ``steps`` set; ``arrays``/``class_names`` come from
    ``bnlab.lab.recipe.load_data``, with an EMPTY validation split (see the module docstring).
    Return a dict with
      ``first_seconds``      wall seconds of the first epoch (epoch experiments) or of the first
                             chunk of ``config["log_every"]["batch"]`` steps (step experiments),
                             all seeds together;
      ``seconds_per_epoch``  mean wall seconds of the later epochs, all seeds together, or
      ``seconds_per_step``   for step experiments: seconds per later step, all seeds together;
      ``path``               a short name of the path, shown in the tables.
    bnlab's default path, as ``bnlab run`` takes it: several seeds of a model that
    ``bnlab.lab.multiseed`` vectorizes train together as one program (the results carry the group's
    time); a single seed, or a conv model, trains with Keras ``fit`` via ``run_trial`` (measured
    here the faster single-seed path: 1.46 s against 1.54 s per epoch for the BN-after MLP).
    """
    from bnlab.lab import multiseed, train

    train.enable_compilation_cache()  # as `bnlab run` does, whichever path
    path = "together" if together else "auto"
    if len(configs) > 1 and train.trains_together(configs[0], path):
        result = timing(multiseed.run_group(configs, arrays, class_names), together=True)
        result["path"] = f"jax-vmap x{len(configs)}"
        return result
    return keras_epoch_times(configs, arrays, class_names)


def keras_epoch_times(configs, arrays, class_names):
    """``bnlab.lab.train.run_trial`` for each config in turn (Keras ``fit``, this process's backend)."""
    from bnlab.lab import train

    train.enable_compilation_cache()
    return timing([train.run_trial(c, arrays, class_names, progress=False) for c in configs])


def timing(outcomes, together=False):
    """The contract's dict from (history, results) pairs as bnlab's trainers return them.

    Epochs: ``first_epoch_seconds`` and ``seconds_per_epoch`` of the results. Steps: from the
    history's cumulative training seconds, logged after each chunk of steps. Separate runs
    (``together=False``) add up; a group trained together is timed once.
    """
    outcomes = outcomes[:1] if together else outcomes
    first = later = 0.0
    for history, results in outcomes:
        if "seconds_per_epoch" in results:
            first += results["first_epoch_seconds"]
            later += results["seconds_per_epoch"]
        else:
            rows = [r for r in history if r.get("step")]  # cumulative train seconds per chunk
            first += rows[0]["seconds"]
            steps = rows[-1]["step"] - rows[0]["step"]
            later += (rows[-1]["seconds"] - rows[0]["seconds"]) / steps
    results = outcomes[0][1]
    key = "seconds_per_epoch" if "seconds_per_epoch" in results else "seconds_per_step"
    path = f"{results.get('path', '?')}/{results.get('backend', '?')}"
    if len(outcomes) > 1:
        path += " (seeds in turn)"
    return {"first_seconds": first, key: later, "path": path}


# ----------------------------------------------------------------------------------------------
# plain PyTorch


def torch_times(config, data):
    """The torch twin of ``config``'s model trained like bnlab trains it; same result keys."""
    import torch

    import torch_models as tm

    torch.manual_seed(config["seed"])
    model, opt, loss = tm.twin(config)
    x, y = data
    if config.get("steps"):
        chunk = config["log_every"]["batch"]
        chunks = [chunk] * (config["steps"] // chunk)
        times = tm.train_steps(model, opt, loss, x, y, config["batch_size"], chunks, config["seed"])
        return {"first_seconds": times[0], "seconds_per_step": sum(times[1:]) / sum(chunks[1:]),
                "path": "torch eager"}
    times = tm.train_epochs(model, opt, loss, x, y, config["batch_size"], config["epochs"],
                            config["seed"])
    return {"first_seconds": times[0], "seconds_per_epoch": sum(times[1:]) / len(times[1:]),
            "path": "torch eager"}


def torch_data(config):
    """The training split as torch tensors (``torch_models.tensors``: NCHW for the conv models,
    one-hot float labels for the deep CNN's sigmoid cross-entropy)."""
    import torch

    import torch_models as tm
    from bnlab.lab import recipe

    torch.set_num_threads(os.cpu_count())
    arrays, _ = recipe.load_data(config)
    x, y = arrays["train"]
    return tm.tensors(x, recipe.labels(config, y))


# ----------------------------------------------------------------------------------------------


def configs_for(exp, arm, args, seeds=(1,)):
    from bnlab.lab.experiments import trial_config

    out = []
    for seed in seeds:
        config = trial_config(exp, arm, seed, dataset="fashion_mnist", epochs=args.epochs,
                              steps=args.steps, limit=args.limit)
        if config.get("steps"):
            config["log_every"] = {"batch": args.chunk, "validation": 10**9}
        config["extras"] = []  # untimed seed extras: predictions, single-sample accuracy
        out.append(config)
    return out


def measure(args, exp, configs, arrays, class_names, tdata, label):
    kind = "steps" if exp.steps else "epochs"
    amount = configs[0].get("steps") or configs[0]["epochs"]
    log(f"{args.path}: {exp.name} / {label} ({len(configs)} seed(s), {amount} {kind})")
    if args.path == "torch":
        times = torch_times(configs[0], tdata)
        n_train = len(tdata[0])
    else:
        times = bnlab_epoch_times(configs, arrays, class_names, args.together) \
            if args.path == "bnlab" else keras_epoch_times(configs, arrays, class_names)
        n_train = len(arrays["train"][0])
    batch = configs[0]["batch_size"]
    row = {"experiment": exp.name, "arm": label, "model": exp.model, "seeds": len(configs),
           "batch_size": batch, "train_examples": n_train,
           "steps_per_epoch": math.ceil(n_train / batch), **times}
    per = row.get("seconds_per_epoch") or row.get("seconds_per_step")
    log(f"{args.path}: {exp.name} / {label}: first {row['first_seconds']:.2f} s, "
        f"then {per:.4f} s per {'step' if exp.steps else 'epoch'}")
    return row


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("bnlab", "keras-tf", "torch"), required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--arms", default="", help="comma-separated; all when empty")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=125)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--multi", default="", help="ARM:K")
    parser.add_argument("--together", action="store_true",
                        help="the --multi seeds together even where `bnlab run` would not "
                             "(`--path together`: the conv models)")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.steps < 2 * args.chunk:
        parser.error("need --epochs ≥ 2 and --steps ≥ 2 × --chunk: the first one is apart")

    import bnlab  # noqa: F401  (picks the default backend when KERAS_BACKEND is unset)
    from bnlab.lab import experiments, recipe, train

    if args.path == "bnlab":  # XLA's options as `bnlab run` picks them for these trials
        from bnlab.models import CONVOLUTIONAL

        train.configure_xla(vectorized=bool(args.multi),
                            convolutional=experiments.get(args.experiment).model in CONVOLUTIONAL)

    backend = "torch-eager"
    if args.path != "torch":
        import keras

        backend = keras.backend.backend()
        if args.path == "keras-tf" and backend != "tensorflow":
            parser.error(f"--path keras-tf needs KERAS_BACKEND=tensorflow, not {backend}")
    exp = experiments.get(args.experiment)
    arms = experiments.select_arms(exp, [a for a in args.arms.split(",") if a])
    arrays = class_names = tdata = None
    if args.path == "torch":
        tdata = torch_data(configs_for(exp, arms[0], args)[0])
    else:
        arrays, class_names = recipe.load_data(configs_for(exp, arms[0], args)[0])
        (xv, yv), (xt, yt) = arrays["val"], arrays["test"]
        arrays.update(val=(xv[:0], yv[:0]), test=(xt[:TEST_CUT], yt[:TEST_CUT]))  # see above
    results = []
    for arm in arms:
        results.append(measure(args, exp, configs_for(exp, arm, args), arrays,
                               class_names, tdata, arm.name))
    if args.multi:
        name, k = args.multi.split(":")
        configs = configs_for(exp, exp.arm(name), args, seeds=range(1, int(k) + 1))
        results.append(measure(args, exp, configs, arrays, class_names, tdata,
                               f"{name}×{k} seeds"))
    emit({"path": args.path, "backend": backend, "experiment": exp.name, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

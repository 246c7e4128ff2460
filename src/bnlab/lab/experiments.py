"""The seed notebooks' experiments, as plain Python data.

An experiment fixes a dataset, its split and preprocessing, a model, an optimizer, a batch size and
a length (epochs, or steps for seed 003), and names its *arms*: the model variants it compares. A
*trial* is one arm trained with one random seed; ``trial_config`` turns (experiment, arm, seed,
overrides) into the plain dict that describes a trial completely and is stored with its results.
"""

from bnlab.errors import UserError
from bnlab.lab import literature, seed_figures, studies
from bnlab.lab.spec import Arm, Experiment  # noqa: F401  (the names others import from here)
from bnlab.results import claims


EXPERIMENTS = {}


def _register(experiment):
    EXPERIMENTS[experiment.name] = experiment
    return experiment


_register(Experiment(
    name="bn-placement",
    title="BN after vs before the activation, and no BN (MLP 300-100)",
    seed_source="000 + 004",
    description=(
        "A 300-100 MLP on Fashion-MNIST: seed 004's baseline (he_normal, LeakyReLU, no BN), BN "
        "after each activation (with an input BN), and BN before it (Dense without bias, BN, then "
        "relu as in seed 004 or elu as in seed 000)."
    ),
    dataset="fashion_mnist",
    model="mlp",
    arms=(
        Arm("baseline", "no BN (he_normal, LeakyReLU)", {"norm": "none"}),
        Arm("bn-after", "BN after the activation", {"norm": "keras", "placement": "after"}),
        Arm("bn-before", "BN before the activation (relu)",
            {"norm": "keras", "placement": "before", "activation": "relu"}),
        Arm("bn-before-elu", "BN before the activation (elu)",
            {"norm": "keras", "placement": "before", "activation": "elu"}),
    ),
    optimizer={"name": "SGD", "learning_rate": 1e-3},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    epochs=10,
    comparisons=(
        {"a": "bn-after", "b": "baseline", "question": "BN vs none"},
        {"a": "bn-before", "b": "baseline", "question": "BN (before) vs none"},
        {"a": "bn-before", "b": "bn-after", "question": "before vs after the activation"},
        {"a": "bn-before-elu", "b": "bn-before", "question": "elu vs relu after BN"},
    ),
))

_register(Experiment(
    name="lenet-bn",
    title="LeNet with a from-scratch BN vs Keras's BN",
    seed_source="001",
    description=(
        "Seed 001's LeNet (sigmoid) with BN after every conv/dense layer: the from-scratch layer "
        "(momentum 0.9, epsilon 1e-5, as the seed's custom layer) against Keras's built-in BN "
        "(defaults 0.99, 1e-3, as the seed used it), and Keras's BN at the from-scratch layer's "
        "settings (0.9, 1e-5), so that 'scratch vs built-in' is not confounded with '0.9 vs "
        "0.99'. RMSprop, batch 64, 5 epochs, the last 20% of the training data as validation."
    ),
    dataset="mnist",
    model="lenet",
    arms=(
        Arm("scratch", "bnlab.layers.BatchNorm (0.9, 1e-5)",
            {"norm": "scratch", "momentum": 0.9, "epsilon": 1e-5}),
        Arm("keras", "keras.layers.BatchNormalization (0.99, 1e-3)", {"norm": "keras"}),
        Arm("keras-0.9", "keras.layers.BatchNormalization (0.9, 1e-5)",
            {"norm": "keras", "momentum": 0.9, "epsilon": 1e-5}),
    ),
    optimizer={"name": "RMSprop", "learning_rate": 1e-3},
    batch_size=64,
    split={"validation_split": 0.2},
    preprocessing="scale",
    epochs=5,
    comparisons=(
        {"a": "scratch", "b": "keras", "question": "scratch vs keras"},
        {"a": "scratch", "b": "keras-0.9", "question": "scratch vs keras, both at (0.9, 1e-5)"},
        {"a": "keras-0.9", "b": "keras", "question": "(0.9, 1e-5) vs (0.99, 1e-3), both keras"},
    ),
))

_register(Experiment(
    name="deep-mlp",
    title="A 20-layer MLP with and without BN",
    seed_source="002",
    description=(
        "Seed 002: 20 x (Dense 100 relu + BN) on standardized Fashion-MNIST (one mean and std "
        "from the training split), plain SGD (learning rate 0.01), 10 epochs; and the same net "
        "without BN. The report shows the predictions for the first three test images."
    ),
    dataset="fashion_mnist",
    model="deep-mlp",
    arms=(
        Arm("bn", "BN after every Dense", {"norm": "keras", "placement": "after"}),
        Arm("no-bn", "no BN", {"norm": "none"}),
    ),
    optimizer={"name": "SGD", "learning_rate": 1e-2},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="standardize",
    epochs=10,
    comparisons=({"a": "bn", "b": "no-bn", "question": "BN vs none"},),
    extras=("predictions",),
))

_register(Experiment(
    name="deep-cnn",
    title="A 19-conv-layer CNN: no BN, Keras's BN, hand-written BN",
    seed_source="003",
    description=(
        "Seed 003: 19 conv layers (4i filters, stride 2 every third) and a Dense 100, trained "
        "800 steps of 64 images with Adam (0.002) on a sigmoid cross-entropy over one-hot "
        "labels. Training-batch metrics every 25 steps, validation metrics every 100, final "
        "validation and test accuracy, and the accuracy on the first 100 test images fed one at "
        "a time in inference mode: proof that inference uses the population statistics."
    ),
    dataset="mnist",
    model="deep-cnn",
    arms=(
        Arm("none", "no BN (bias + relu)", {"norm": "none"}),
        Arm("keras", "keras.layers.BatchNormalization (0.99, 1e-3)", {"norm": "keras"}),
        Arm("scratch", "bnlab.layers.BatchNorm (0.99, 1e-3)", {"norm": "scratch"}),
    ),
    optimizer={"name": "Adam", "learning_rate": 2e-3},
    batch_size=64,
    split={"validation": 5000},
    preprocessing="scale",
    steps=800,
    comparisons=(
        {"a": "keras", "b": "none", "question": "BN vs none"},
        {"a": "scratch", "b": "none", "question": "hand-written BN vs none"},
        {"a": "scratch", "b": "keras", "question": "scratch vs keras"},
    ),
    extras=("single_sample",),
    log_every={"batch": 25, "validation": 100},
))



# The paper studies, in `bnlab list`'s order: `make studies` runs them into docs/studies/.
STUDIES = studies.STUDIES + literature.STUDIES
for _study in STUDIES:
    _register(_study)
_register(studies.CNN_BATCHES)


def get(name):
    """The experiment called ``name``; a UserError that lists the known ones otherwise."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def select_arms(experiment, names=None):
    """The arms called ``names`` (all when None), in the experiment's order."""
    if not names:
        return list(experiment.arms)
    known = [arm.name for arm in experiment.arms]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"unknown arm {unknown[0]!r} for experiment {experiment.name}; known: {', '.join(known)}"
        )
    return [arm for arm in experiment.arms if arm.name in names]


def trial_config(experiment, arm, seed, *, dataset=None, epochs=None, steps=None, limit=None,
                 backend=None):
    """The plain dict that describes one trial completely (it is hashed into the trial's id).

    An arm with a batch size B of its own (the experiment's: B₀) trains with learning rate
    η₀ · B/B₀ for steps · B₀/B, logging as often in images (Goyal et al.'s linear scaling rule).
    """
    batch_size = arm.batch_size or arm.training.get("batch_size", experiment.batch_size)
    ratio = arm.scaling(experiment)
    optimizer = dict(experiment.optimizer)
    if ratio != 1:
        optimizer["learning_rate"] = experiment.optimizer["learning_rate"] * ratio
    # the arm's own optimizer arguments (learning_rate, and the studies' weight_decay, ...)
    optimizer.update({k: v for k, v in arm.training.items() if k != "batch_size"})
    config = {
        "experiment": experiment.name,
        "arm": arm.name,
        "seed": int(seed),
        "dataset": dataset or experiment.dataset,
        "split": dict(experiment.split),
        "preprocessing": experiment.preprocessing,
        "limit": limit,
        "model": {"name": experiment.model, **arm.model},
        "optimizer": optimizer,
        "batch_size": batch_size,
        "backend": backend,
    }
    if experiment.steps:
        length = arm.length / ratio
        config["steps"] = max(1, round(int(steps or experiment.steps) * length))
        config["log_every"] = {k: max(1, round(v * length))
                               for k, v in experiment.log_every.items()}
    else:
        config["epochs"] = int(epochs or experiment.epochs)
    config["extras"] = list(experiment.extras)
    if experiment.probe:  # only then: the ids of trials without a probe stay as they were
        config["probe"] = dict(experiment.probe)
    schedule = arm.schedule or experiment.schedule
    if schedule:  # likewise
        config["schedule"] = dict(schedule)
    if experiment.precise_samples:
        config["precise_samples"] = list(experiment.precise_samples)
    return config


# What an experiment's definition fixes in a trial's config; the rest (dataset, epochs or steps,
# limit, backend) the command line may change.
DEFINED_KEYS = ("model", "optimizer", "batch_size", "split", "preprocessing", "extras", "probe")


def same_configuration(experiment, config):
    """Whether ``config`` is a trial of ``experiment`` as defined now: its arm is one of the
    experiment's and every key of :data:`DEFINED_KEYS` is what ``trial_config`` gives it. Two
    files with one name and an arm ``a`` of another model are two experiments, never pooled."""
    arm = next((a for a in experiment.arms if a.name == config.get("arm")), None)
    if arm is None or not isinstance(config.get("seed"), int):
        return False
    expected = trial_config(experiment, arm, config["seed"], dataset=config.get("dataset"),
                            epochs=config.get("epochs"), limit=config.get("limit"),
                            backend=config.get("backend"))
    return all(expected.get(k) == config.get(k) for k in DEFINED_KEYS)


def command_line(experiment, config, seeds):
    """The ``bnlab run`` command that recreates trials of ``config``'s settings over ``seeds``."""
    words = ["bnlab", "run", experiment.source or experiment.name, "--seeds", str(seeds)]
    if config["dataset"] != experiment.dataset:
        words += ["--dataset", config["dataset"]]
    if config.get("epochs") and config["epochs"] != experiment.epochs:
        words += ["--epochs", str(config["epochs"])]
    steps = config.get("steps")
    if steps:  # back from the arm's steps to the experiment's (see trial_config)
        arm = experiment.arm(config["arm"])
        steps = round(steps * arm.scaling(experiment) / arm.length)
    if steps and steps != experiment.steps:
        words += ["--steps", str(steps)]
    if config.get("limit"):
        words += ["--limit", str(config["limit"])]
    if config.get("backend"):
        words = [f"KERAS_BACKEND={config['backend']}"] + words
    return " ".join(words)


def as_report_spec(experiment, command=None):
    """The plain description bnlab.results.report.write_report reads."""
    return {
        "name": experiment.name,
        "title": experiment.title,
        "description": experiment.description,
        "seed_source": experiment.seed_source,
        "arms": [{"name": a.name, "label": a.label, "group": a.group, "x": a.x}
                 for a in experiment.arms],
        "comparisons": [dict(c) for c in experiment.comparisons],
        "claims": [claims.as_dict(c) for c in experiment.claims],
        "x_axis": experiment.x_axis,
        "command": command,
        "seed_figures": seed_figures.for_report(experiment.name),
    }

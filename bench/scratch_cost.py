"""Goal (a): what the from-scratch layer costs in a training step, model by model.

For each seed model with BN, the same architecture is built twice, with ``norm="keras"``
(keras.layers.BatchNormalization) and ``norm="scratch"`` (bnlab.layers.BatchNorm), compiled as
bnlab compiles it, and trained on the same fixed block of batches with Keras's ``fit``. The two are
timed in pairs of adjacent blocks, ``reps`` pairs, after a warm-up, in ABBA order, and the ratio
is the median of the pairs' ratios. Pairing in one process cancels the drift of a shared machine
that sequential measurements of separate arms suffer from (those swing by ±20 % here).

    python bench/scratch_cost.py --models dense|conv [--reps 9] [--quick]   (JSON, last line)
"""

import sys

from common import emit, log, pair_parser, pair_summary, time_pairs, training_block

# (experiment, arm): the BN arms of the seed models, trained on bnlab's default backend.
MODELS = (("bn-placement", "bn-after"), ("bn-placement", "bn-before"), ("deep-mlp", "bn"),
          ("lenet-bn", "keras"), ("deep-cnn", "keras"))
STEPS = {"mlp": 200, "deep-mlp": 200, "lenet": 60, "deep-cnn": 15}


def with_norm(norm, **options):
    """A builder of ``measure``: the trial's model with ``norm`` (and ``norm_options``), compiled
    as bnlab compiles it."""
    from bnlab.lab import recipe

    def build(config):
        model = {**config["model"], "norm": norm}
        if options:
            model["norm_options"] = options
        return recipe.compile_model(dict(config, model=model))
    return build


def measure(models, builders, kind, reps, quick):
    """For each (experiment, arm) of ``models`` whose kind (MLP: ``dense``, else ``conv``) is
    ``kind``: the two models of ``builders`` ({name: config -> compiled model}, seeded alike),
    trained with ``fit`` on the same block of batches, once untimed (compilation), then timed in
    ``reps`` ABBA pairs. Returns one row per model, ``ratio`` = first builder / second."""
    import keras

    from bnlab.lab import experiments
    from bnlab.models import CONVOLUTIONAL

    rows = []
    for experiment_name, arm_name in models:
        experiment = experiments.get(experiment_name)
        if (experiment.model in CONVOLUTIONAL) != (kind == "conv"):
            continue
        base = experiments.trial_config(experiment, experiment.arm(arm_name), 1,
                                        dataset="fashion_mnist", epochs=1)
        model_name, batch = base["model"]["name"], base["batch_size"]
        steps = 3 if quick else STEPS[model_name]
        x, y = training_block(base, steps)
        blocks = {}
        for name, build in builders.items():
            keras.utils.set_random_seed(1)
            blocks[name] = (lambda m=build(base): m.fit(x, y, batch_size=batch, epochs=1,
                                                         shuffle=False, verbose=0))
            blocks[name]()  # compilation
        times, pair_ratios = time_pairs(blocks, 2 if quick else reps, steps)
        first, second = builders
        rows.append({"experiment": experiment_name, "arm": arm_name, "model": model_name,
                     "backend": keras.backend.backend(), "pair": f"{first} / {second}",
                     **pair_summary(times, pair_ratios, steps)})
        log(f"{model_name} ({arm_name}): {first} / {second} = {rows[-1]['ratio']:.3f}")
    return rows


def setup(kind):
    """The process as `bnlab run` sets it up for ``kind``: the MLPs' seeds together (``dense``),
    or the conv models one seed at a time (``conv``); the default backend."""
    import bnlab  # noqa: F401  (the default backend, as bnlab run picks it)
    from bnlab.lab import train

    train.configure_xla(vectorized=kind == "dense", convolutional=kind == "conv")
    train.enable_compilation_cache()


def main(argv):
    parser = pair_parser(__doc__)
    parser.add_argument("--models", choices=("dense", "conv"), required=True,
                        help="the MLPs, in a process set up as `bnlab run` trains them (seeds "
                             "together), or the conv models (one seed at a time)")
    args = parser.parse_args(argv)
    setup(args.models)
    builders = {"scratch": with_norm("scratch"), "keras": with_norm("keras")}
    emit({"rows": measure(MODELS, builders, args.models, args.reps, args.quick)})


if __name__ == "__main__":
    main(sys.argv[1:])

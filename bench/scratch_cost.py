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


def main(argv):
    parser = pair_parser(__doc__)
    parser.add_argument("--models", choices=("dense", "conv"), required=True,
                        help="the MLPs, in a process set up as `bnlab run` trains them (seeds "
                             "together), or the conv models (one seed at a time)")
    args = parser.parse_args(argv)

    import bnlab  # noqa: F401  (the default backend, as bnlab run picks it)
    import keras

    from bnlab.lab import experiments, multiseed, recipe, train

    dense = args.models == "dense"
    train.configure_xla(vectorized=dense)  # XLA's options as `bnlab run` picks them
    train.enable_compilation_cache()
    rows = []
    for experiment_name, arm_name in MODELS:
        experiment = experiments.get(experiment_name)
        if (experiment.model in multiseed.VECTORIZED_MODELS) != dense:
            continue
        arm = experiment.arm(arm_name)
        base = experiments.trial_config(experiment, arm, 1, dataset="fashion_mnist", epochs=1)
        model_name = base["model"]["name"]
        steps = 3 if args.quick else STEPS[model_name]
        batch = base["batch_size"]
        x, y = training_block(base, steps)
        models = {}
        for norm in ("keras", "scratch"):
            config = dict(base, model={**base["model"], "norm": norm})
            keras.utils.set_random_seed(1)
            models[norm] = recipe.compile_model(config)
            models[norm].fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)  # compile
        blocks = {norm: (lambda m=models[norm]: m.fit(x, y, batch_size=batch, epochs=1,
                                                       shuffle=False, verbose=0))
                  for norm in ("scratch", "keras")}
        times, pair_ratios = time_pairs(blocks, 2 if args.quick else args.reps, steps)
        row = {"experiment": experiment_name, "arm": arm_name, "model": model_name,
               "backend": keras.backend.backend(), **pair_summary(times, pair_ratios, steps)}
        log(f"scratch cost: {model_name} ({arm_name}): scratch / keras = {row['ratio']:.3f}")
        rows.append(row)
    emit({"rows": rows})


if __name__ == "__main__":
    main(sys.argv[1:])

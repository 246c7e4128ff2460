"""Goal (b), head to head: bnlab against plain PyTorch in one process, timed in ABBA pairs.

Keras-on-TF needs a process of its own (Keras fixes its backend per process); plain PyTorch does
not. So for every arm the bnlab model (Keras ``fit`` on bnlab's backend, as ``bnlab run`` trains
one seed) and its PyTorch twin (bench/torch_models.py) are built in one process and trained on
the same block of batches, in blocks timed alternately in ABBA order; the ratio is the median of
the pairs' ratios. The epoch tables time each framework in its own process minutes apart, and on
this shared machine such numbers swing by ±20-40 % from one run to the next; pairing cancels it.
A short pause between blocks lets the other framework's worker threads go idle.

    python bench/paired.py [--reps 9] [--quick]     (prints JSON on its last line)
"""

import os
import sys

from common import emit, log, pair_parser, pair_summary, time_pairs, training_block

EXPERIMENTS = ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn")
STEPS = {"mlp": 200, "deep-mlp": 200, "lenet": 60, "deep-cnn": 15}
PAUSE = 0.2  # seconds between blocks


def main(argv):
    args = pair_parser(__doc__).parse_args(argv)

    import bnlab  # noqa: F401  (the default backend, as bnlab run picks it)
    import keras
    import torch

    import torch_models as tm
    from bnlab.lab import experiments, recipe, train

    train.configure_xla(vectorized=False)  # one seed at a time, as `bnlab run --seeds 1`
    train.enable_compilation_cache()
    torch.set_num_threads(os.cpu_count())
    rows = []
    for experiment_name in EXPERIMENTS:
        experiment = experiments.get(experiment_name)
        for arm in experiment.arms:
            config = experiments.trial_config(
                experiment, arm, 1, dataset="fashion_mnist",
                **({"steps": 10} if experiment.steps else {"epochs": 1}))
            name, batch = config["model"]["name"], config["batch_size"]
            steps = 3 if args.quick else STEPS[name]
            x, y = training_block(config, steps)

            keras.utils.set_random_seed(1)
            model = recipe.compile_model(config)

            def bnlab_block():
                model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

            torch.manual_seed(1)
            twin, opt, loss_fn = tm.twin(config)
            xt, yt = tm.tensors(x, y)
            twin.train()

            def torch_block():
                for start in range(0, steps * batch, batch):
                    tm._step(twin, opt, loss_fn, xt[start:start + batch], yt[start:start + batch])

            blocks = {"bnlab": bnlab_block, "torch": torch_block}
            for block in blocks.values():  # warm-up: compilation, allocator, caches
                block()
            times, pair_ratios = time_pairs(blocks, 2 if args.quick else args.reps, steps, PAUSE)
            row = {"experiment": experiment_name, "arm": arm.name, "model": name,
                   "backend": keras.backend.backend(), **pair_summary(times, pair_ratios, steps)}
            log(f"paired: {experiment_name} / {arm.name}: bnlab / torch = {row['ratio']:.3f}")
            rows.append(row)
    emit({"rows": rows})


if __name__ == "__main__":
    main(sys.argv[1:])

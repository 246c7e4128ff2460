"""Issue 8 §5: what bnlab's BN variants cost in a training step, against their natural baselines.

- ``norm="renorm"`` (bnlab.layers.BatchNorm(renorm=True)) against Keras's own
  ``BatchNormalization(renorm=True)`` with the same arguments, in the same model;
- ``norm="ghost"`` (BatchNorm(virtual_batch_size=k)) against ``norm="scratch"`` (plain BatchNorm).

For the BN-after MLP and LeNet, each pair is built in one process, trained on the same block of
batches with Keras's ``fit``, and timed in adjacent ABBA pairs after a warm-up; the ratio is the
median of the pairs' ratios (bench/scratch_cost.py's ``measure``, which goal (a) uses too).

    python bench/variant_cost.py --models dense|conv [--reps 9] [--quick]   (JSON, last line)
"""

import inspect
import sys

from common import emit, pair_parser
from scratch_cost import measure, setup, with_norm

MODELS = (("bn-placement", "bn-after"), ("lenet-bn", "keras"))


def keras_renorm(config):
    """The trial's model with ``norm="renorm"``, every bnlab BatchNorm replaced by Keras's own
    ``BatchNormalization`` with the same arguments (and weights), compiled alike."""
    import keras

    from bnlab.layers import BatchNorm

    keras_args = set(inspect.signature(keras.layers.BatchNormalization).parameters)
    keras_args |= {"name", "dtype", "trainable"}

    def swap(layer):
        if isinstance(layer, BatchNorm):
            args = {k: v for k, v in layer.get_config().items() if k in keras_args}
            return keras.layers.BatchNormalization(**args)
        return layer.__class__.from_config(layer.get_config())

    ours = with_norm("renorm")(config)
    twin = keras.models.clone_model(ours, clone_function=swap)
    twin.set_weights(ours.get_weights())
    twin.compile_from_config(ours.get_compile_config())
    return twin


def main(argv):
    parser = pair_parser(__doc__)
    parser.add_argument("--models", choices=("dense", "conv"), required=True,
                        help="the BN-after MLP (seeds-together process setup) or LeNet")
    args = parser.parse_args(argv)
    setup(args.models)
    rows = []
    for builders in ({"renorm": with_norm("renorm"), "keras-renorm": keras_renorm},
                     {"ghost": with_norm("ghost"), "scratch": with_norm("scratch")}):
        rows += measure(MODELS, builders, args.models, args.reps, args.quick)
    emit({"rows": rows})


if __name__ == "__main__":
    main(sys.argv[1:])

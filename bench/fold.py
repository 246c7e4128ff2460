"""Inference time of each seed model with its BN folded away (bnlab.tools.fold) and as trained.

For each seed model with Keras's BN, in both placements, the model and its folded twin
``predict`` the same 10,000 images (batches of 500, as bnlab evaluates), once untimed
(compilation), then timed in ``reps`` ABBA pairs in one process (common.time_pairs); the ratio is
the median of the pairs' folded / unfolded ratios. The weights are the freshly built ones: the
time of an inference does not depend on their values.

    python bench/fold.py [--reps 9] [--quick]   (JSON, last line)
"""

import sys

from common import emit, log, pair_parser, pair_summary, time_pairs

IMAGES = 10_000
BATCH = 500
MODELS = tuple((name, placement) for name in ("mlp", "deep-mlp", "lenet", "deep-cnn")
               for placement in ("after", "before"))


def main(argv):
    args = pair_parser(__doc__).parse_args(argv)
    import numpy as np

    import bnlab  # noqa: F401
    from bnlab import models
    from bnlab.tools.fold import fold

    images = 1_000 if args.quick else IMAGES
    reps = 2 if args.quick else args.reps
    rows = []
    for name, placement in MODELS:
        model = models.build(name, norm="keras", placement=placement, seed=0)
        folded = fold(model)
        shape = (images, 28, 28) + ((1,) if name in models.CONVOLUTIONAL else ())
        x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
        blocks = {"folded": lambda m=folded: m.predict(x, batch_size=BATCH, verbose=0),
                  "unfolded": lambda m=model: m.predict(x, batch_size=BATCH, verbose=0)}
        for run in blocks.values():
            run()  # compilation
        times, ratios = time_pairs(blocks, reps, steps=1)
        row = {"model": name, "placement": placement, "images": images,
               "layers": len(model.layers), "folded_layers": len(folded.layers),
               **pair_summary(times, ratios, 1)}
        log(f"{name} {placement}: folded / unfolded = {row['ratio']:.3f} "
            f"({row['folded_ms']:.0f} vs {row['unfolded_ms']:.0f} ms per {images} images)")
        rows.append(row)
    emit({"rows": rows})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

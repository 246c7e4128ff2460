"""Inference time of each seed model with its BN folded away (bnlab.tools.fold), or as trained.

    python bench/fold.py --which folded|unfolded [--quick]     (JSON on the last line)

A side of bench/alternate.py: each seed model with Keras's BN, in both placements, or its folded
twin ``predict``s 10,000 images in batches of 500, once untimed (compiling), then BLOCKS times; a
row's ``ms`` is the median call. Freshly built weights: their values do not change the time.
"""

import argparse
import sys

from common import BLOCKS, emit, log, median, timings

IMAGES, BATCH = 10_000, 500
MODELS = tuple((name, placement) for name in ("mlp", "deep-mlp", "lenet", "deep-cnn")
               for placement in ("after", "before"))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=("folded", "unfolded"), required=True)
    parser.add_argument("--quick", action="store_true", help="1,000 images")
    args, _ = parser.parse_known_args(argv)  # alternate.py's step options do not apply here
    import numpy as np

    from bnlab import models
    from bnlab.tools.fold import fold

    images = 1_000 if args.quick else IMAGES
    rows = []
    for name, placement in MODELS:
        model = models.build(name, norm="keras", placement=placement, seed=0)
        layers = len(model.layers)
        if args.which == "folded":
            model = fold(model)
        shape = (images, 28, 28) + ((1,) if name in models.CONVOLUTIONAL else ())
        x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
        seconds = timings(lambda: model.predict(x, batch_size=BATCH, verbose=0), BLOCKS)
        rows.append({"experiment": name, "arm": placement, "layers": layers,
                     "kept_layers": len(model.layers),
                     "ms": 1000 * median(seconds) * IMAGES / images})
        log(f"{args.which} {name} {placement}: {rows[-1]['ms']:.0f} ms per {IMAGES} images")
    emit({"side": f"fold:{args.which}", "rows": rows})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Inference time of each seed model with its BN folded away (bnlab.tools.fold), or as trained.

    python bench/fold.py --which folded|unfolded [--blocks 3] [--quick]   (JSON, last line)

A side of bench/alternate.py (``fold:folded``, ``fold:unfolded``): for each seed model with
Keras's BN, in both placements, the model (``unfolded``) or its folded twin ``predict``s the same
10,000 images in batches of 500, as bnlab evaluates, once untimed (compiling), then ``--blocks``
timed calls; the row's ``ms`` is the median call, per 10,000 images. The weights are the freshly
built ones: the time of an inference does not depend on their values.
"""

import argparse
import sys
import time

from common import emit, log, median

IMAGES, BATCH = 10_000, 500
MODELS = tuple((name, placement) for name in ("mlp", "deep-mlp", "lenet", "deep-cnn")
               for placement in ("after", "before"))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=("folded", "unfolded"), required=True)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 images")
    args, _ = parser.parse_known_args(argv)  # alternate.py's step options do not apply here
    import numpy as np

    import bnlab  # noqa: F401
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
        model.predict(x, batch_size=BATCH, verbose=0)  # compiling
        times = []
        for _ in range(args.blocks):
            start = time.perf_counter()
            model.predict(x, batch_size=BATCH, verbose=0)
            times.append(1000 * (time.perf_counter() - start) * IMAGES / images)
        rows.append({"experiment": name, "arm": placement, "layers": layers,
                     "kept_layers": len(model.layers), "ms": median(times)})
        log(f"{args.which} {name} {placement}: {rows[-1]['ms']:.0f} ms per {IMAGES} images")
    emit({"side": f"fold:{args.which}", "rows": rows})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

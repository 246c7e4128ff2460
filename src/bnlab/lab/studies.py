"""Three paper-shaped studies, as named experiments with a ``--quick`` form.

    ioffe-fig1   Ioffe & Szegedy 2015, Fig. 1(a-c): a 3 × 100 sigmoid MLP, BN before each sigmoid
                 vs none; test accuracy against steps, and the 15/50/85th percentiles of one
                 last-hidden-layer sigmoid's input over training (``Experiment.probe``,
                 ``bnlab.tools.probe``).
    batch-size   Wu & He 2018 (Group Norm), Table/Fig. of error vs batch size, and Ioffe 2017
                 (Batch Renorm) at microbatches of 2: the study CNN with BN / renorm / ghost /
                 group / layer / none at batches 2..32, learning rate scaled linearly.
    precise-bn   Wu & Johnson 2021: the same weights evaluated with EMA statistics (momentum 0.99,
                 0.9) and with PreciseBN, after short and long training.

Plain data, like ``experiments.py``; what the trials measure beyond accuracy is in
``bnlab.lab.measure``, and the study sections of their reports in ``bnlab.results.studies``.
Full settings are sized for ``make studies`` (about 30-40 minutes on two cores); ``quick`` is what
``bnlab run NAME --quick`` uses (under 3 minutes on two idle cores, a few thousand images).
"""

from bnlab.lab.spec import Arm, Experiment

BATCH_SIZES = (2, 4, 8, 16, 32)
RUN_ORDER = (2, 32, 8, 16, 4)
BASE_BATCH = 32
# (norm, label, the smallest batch it runs at): Ghost BN's groups of 8 need batches of 16 or
# more to differ from BN (at 8 and below it *is* BN).
BATCH_NORMS = (
    ("bn", {"norm": "scratch"}, "BN", 2),
    ("renorm", {"norm": "renorm"}, "Batch Renorm", 2),
    ("ghost", {"norm": "ghost"}, "Ghost BN (groups of 8)", 16),
    ("group", {"norm": "group"}, "GroupNorm (G = 8, 16, 32)", 2),
    ("layer", {"norm": "layer"}, "LayerNorm", 2),
    ("none", {"norm": "none"}, "no norm", 2),
)


def batch_arm_name(norm, batch_size):
    return f"{norm}-b{batch_size}"


IOFFE_FIG1 = Experiment(
    name="ioffe-fig1",
    title="BN keeps a sigmoid's input steady (Ioffe & Szegedy 2015, Fig. 1)",
    seed_source="study",
    description=(
        "Ioffe & Szegedy 2015 §4.1: 3 fully connected hidden layers of 100 sigmoid units, BN "
        "before each sigmoid vs none, batch 60, plain SGD at learning rate 0.5 (the paper does "
        "not state its rate). Test accuracy against steps, and the 15th, 50th and 85th "
        "percentiles of the input of the first sigmoid of the last hidden layer over 1000 test "
        "images, in inference mode, as training goes on."
    ),
    dataset="fashion_mnist",
    model="sigmoid-mlp",
    arms=(
        Arm("bn", "BN before each sigmoid", {"norm": "keras"}),
        Arm("none", "no BN", {"norm": "none"}),
    ),
    optimizer={"name": "SGD", "learning_rate": 0.5},
    batch_size=60,
    split={"validation": 5000},
    preprocessing="scale",
    steps=6000,
    comparisons=({"a": "bn", "b": "none", "question": "BN vs none"},),
    log_every={"batch": 100, "validation": 200},
    extras=("test_curve",),
    # unit 0 of the last hidden layer's sigmoid (the third Activation layer), at the validation
    # points (every 200 steps)
    probe={"layers": ["activation:-1"], "unit": 0, "mode": "inference", "split": "test",
           "images": 1000, "every": 200},
    quick={"steps": 1200, "limit": 5000},
)

BATCH_SIZE = Experiment(
    name="batch-size",
    title="Normalization against batch size (Wu & He 2018; Ioffe 2017)",
    seed_source="study",
    description=(
        "The study CNN (3 conv layers 16-32-64, a norm after each, global average pooling) with "
        "BN, Batch Renorm, Ghost BN, GroupNorm, LayerNorm or no norm, at per-batch sizes 2, 4, 8, "
        "16 and 32. SGD with momentum 0.9 at learning rate 0.02 · B/32 (the linear scaling rule "
        "of Goyal et al. 2017, as the GN paper uses it) for as many images at every batch size. Test error "
        "by batch size (the GN paper's table and figure), and validation accuracy against steps "
        "at batch 2, BN vs Batch Renorm (the renorm paper's microbatch experiment)."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    # the ends first, so that an interrupted run has the paper's two extremes to show
    arms=tuple(Arm(batch_arm_name(name, b), f"{label}, batch {b}", model, batch_size=b)
               for b in RUN_ORDER for name, model, label, smallest in BATCH_NORMS
               if b >= smallest),
    optimizer={"name": "SGD", "learning_rate": 0.02, "momentum": 0.9},
    batch_size=BASE_BATCH,
    split={"validation": 5000},
    preprocessing="scale",
    # At batch 32: 54,400 images, about one epoch of the 55,000 training images, so that every
    # norm converges and BN's moving averages (momentum 0.99) have forgotten their start.
    steps=1700,
    comparisons=(
        {"a": "group-b2", "b": "bn-b2", "question": "GN vs BN at batch 2"},
        {"a": "renorm-b2", "b": "bn-b2", "question": "renorm vs BN at batch 2"},
        {"a": "bn-b32", "b": "bn-b2", "question": "BN: batch 32 vs 2"},
        {"a": "group-b32", "b": "group-b2", "question": "GN: batch 32 vs 2"},
    ),
    log_every={"batch": 85, "validation": 170},
    quick={"steps": 50, "limit": 2000, "seeds": 2,
           "arms": [batch_arm_name(n, b) for n in ("bn", "renorm", "group") for b in (2, 32)]},
)

PRECISE_BN = Experiment(
    name="precise-bn",
    title="EMA statistics vs PreciseBN, after short and long training (Wu & Johnson 2021)",
    seed_source="study",
    description=(
        "The study CNN with bnlab's BN, SGD with momentum 0.9 at learning rate 0.02, batch 32. Training-mode BN "
        "never reads its moving statistics, so the arms with momentum 0.99 and 0.9 train the same "
        "weights from the same seed; they differ only in the EMA statistics inference uses. "
        "After training, PreciseBN (bnlab.tools.precise_bn, 100 batches of 32 training images) "
        "recomputes the statistics with the weights fixed: the test accuracy with them, and how "
        "far the EMA statistics were from them."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    arms=(
        Arm("ema0.99-short", "momentum 0.99, short", {"norm": "scratch", "momentum": 0.99},
            length=0.1),
        Arm("ema0.9-short", "momentum 0.9, short", {"norm": "scratch", "momentum": 0.9},
            length=0.1),
        Arm("ema0.99-long", "momentum 0.99, long", {"norm": "scratch", "momentum": 0.99}),
        Arm("ema0.9-long", "momentum 0.9, long", {"norm": "scratch", "momentum": 0.9}),
    ),
    optimizer={"name": "SGD", "learning_rate": 0.02, "momentum": 0.9},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    steps=1000,  # long; short is 100
    comparisons=(
        {"a": "ema0.9-short", "b": "ema0.99-short", "question": "EMA 0.9 vs 0.99, short"},
        {"a": "ema0.9-long", "b": "ema0.99-long", "question": "EMA 0.9 vs 0.99, long"},
    ),
    extras=("precise_bn",),
    log_every={"batch": 50, "validation": 250},
    quick={"steps": 300, "limit": 3000},
)

STUDIES = (IOFFE_FIG1, BATCH_SIZE, PRECISE_BN)

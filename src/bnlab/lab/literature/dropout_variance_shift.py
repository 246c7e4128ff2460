"""dropout-variance-shift: Li, Chen, Hu & Yang 2019, "Understanding the disharmony between dropout
and batch normalization by variance shift".

Dropout scales the units it keeps by 1/(1 − p) in training only, so a BN layer behind it learns
moving statistics from a variance that inference never sees (``bnlab.tools.variance_shift``).
An MLP of 4 × (Dense 256 → BN → relu) with Dropout (p = 0.5) in front of every Dense → BN but
the first (``before-bn``), against the same net with one Dropout after the last BN only
(``after-bn``, Li et al.'s first remedy). After training, the same ``before-bn`` weights are
also scored with their statistics recomputed by PreciseBN with dropout off (Li et al.'s second
remedy), and with dropout on (which separates the EMA's staleness from dropout's shift).
"""

from bnlab.lab.spec import Arm, Claim, Experiment

RATE = 0.5

STUDY = Experiment(
    name="dropout-variance-shift",
    title="Dropout before BN shifts the variance BN sees (Li et al. 2019)",
    seed_source="study",
    description=(
        "A 4 × (Dense 256 → BN → relu) MLP on Fashion-MNIST with Dropout (p = 0.5) in front of "
        "the 2nd-4th Dense → BN, against one Dropout after the last BN. SGD with momentum 0.9 "
        "at 0.02, batch 64, 3 epochs over the first 15,000 training images. After training: "
        "the variance of the last BN layer's inputs in training (PreciseBN, dropout on) over "
        "their variance at test time (mean over channels), and the test accuracy with the "
        "statistics recomputed (PreciseBN, 100 batches) with dropout on and off."
    ),
    dataset="fashion_mnist",
    model="dropout-mlp",
    arms=(
        Arm("before-bn", "Dropout → Dense → BN",
            {"norm": "scratch", "dropout": "before-bn", "dropout_rate": RATE}),
        Arm("after-bn", "Dropout after the last BN only",
            {"norm": "scratch", "dropout": "after-bn", "dropout_rate": RATE}),
    ),
    optimizer={"name": "SGD", "learning_rate": 0.02, "momentum": 0.9},
    batch_size=64,
    split={"validation": 5000, "train": 15000},  # the first 15,000 training images
    preprocessing="scale",
    epochs=3,
    comparisons=({"a": "after-bn", "b": "before-bn", "question": "dropout after vs before BN"},),
    extras=("variance_shift",),
    claims=(
        Claim("Dropout before BN: the variance BN learns in training exceeds the test-time one "
              "(log σ²_train/σ²_test > 0)", a="before-bn", metric="log_variance_shift",
              direction="greater", paper="variance shift ≠ 1 (their Fig. 2-4)"),
        Claim("The shift is larger with dropout before BN than with dropout after the last BN",
              a="before-bn", b="after-bn", metric="log_variance_shift", direction="greater",
              paper="no shift when no dropout precedes a BN"),
        Claim("Accuracy drops with dropout before BN: dropout after the last BN tests better",
              a="after-bn", b="before-bn", direction="greater",
              paper="dropout before BN hurts test accuracy; moving it after the last BN recovers"),
        Claim("Statistics recomputed with dropout off recover the accuracy (same weights)",
              a="before-bn", b="before-bn", metric="precise_nodrop_test_accuracy",
              metric_b="test_accuracy", direction="greater",
              paper="recomputing BN's statistics in inference-dropout mode helps"),
    ),
    seeds=5,
    quick={"limit": 3000, "seeds": 2},
)

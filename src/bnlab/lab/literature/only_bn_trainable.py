"""only-bn-trainable: Frankle, Schwab & Morcos 2021, "Training BatchNorm and only BatchNorm: on
the expressive power of random features in CNNs".

With every conv and Dense weight frozen at its random initialization, training only BN's γ and β
(two parameters a channel) reaches far more than chance; training as many *other* parameters,
two random kernel entries a channel (``bnlab.layers.ChannelTunedConv2D``), reaches much less;
and many γ end near 0, switching their channel off. The study CNN
(16-32-64 channels), its head frozen too in both partial arms, against the same net trained
whole; BN momentum 0.9, so that the moving statistics keep up in a few hundred steps.
"""

from bnlab.lab.spec import Arm, Claim, Experiment
from bnlab.results.claims import DERIVED

# "Far above chance": more than three times chance (10 classes), as points above 30 %.
FAR_ABOVE = 0.3
DERIVED["test_points_over_30"] = (
    lambda results, history: 100 * (results["test_accuracy"] - FAR_ABOVE))

MODEL = {"norm": "scratch", "momentum": 0.9}

STUDY = Experiment(
    name="only-bn-trainable",
    title="Training BatchNorm and only BatchNorm (Frankle et al. 2021)",
    seed_source="study",
    description=(
        "The study CNN (conv 16-32-64, BN with momentum 0.9, relu, global average pooling, "
        "Dense 10), Adam at 0.003, batch 32: every weight trained; only BN's γ and β (224 "
        "parameters), everything else frozen at its random initialization, the head included; "
        "and, as many parameters again, two random kernel entries of each conv output channel "
        "(γ, β and the head frozen). After training: the share of γ with |γ| < 0.1."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    arms=(
        Arm("all", "every weight trained", MODEL),
        Arm("bn-only", "only γ and β trained", {**MODEL, "train": "norm"}),
        Arm("two-per-channel", "two random kernel weights a channel trained",
            {**MODEL, "train": "two-per-channel"}),
    ),
    optimizer={"name": "Adam", "learning_rate": 3e-3},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    steps=300,
    comparisons=(
        {"a": "bn-only", "b": "two-per-channel", "question": "γβ vs two random weights a channel"},
        {"a": "all", "b": "bn-only", "question": "everything vs γβ only"},
    ),
    extras=("gamma",),
    claims=(
        Claim("Training only γ and β reaches far above chance (more than 30 %, 3× chance)",
              a="bn-only", metric="test_points_over_30", direction="greater",
              paper="82 % on CIFAR-10 (ResNet-866), 32 % top-1 on ImageNet"),
        Claim("γ and β beat as many random other weights (two a channel)", a="bn-only",
              b="two-per-channel", direction="greater",
              paper="BN-only far above the random-two-per-channel control"),
        Claim("A sizable share of γ ends near 0 (more than when all weights train)",
              a="bn-only", b="all", metric="gamma_near_zero", direction="greater",
              paper="many γ near 0: features switched off"),
    ),
    log_every={"batch": 50, "validation": 100},
    seeds=5,
    quick={"steps": 60, "limit": 2000, "seeds": 2},
)

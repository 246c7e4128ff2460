"""only-bn-trainable: Frankle, Schwab & Morcos 2021, "Training BatchNorm and only BatchNorm: on
the expressive power of random features in CNNs".

With every conv and Dense weight frozen at its random initialization, training only BN's γ and β
(two parameters a channel) reaches far more than chance; training as many *other* parameters,
two random kernel entries a channel (``bnlab.layers.ChannelTunedConv2D``), reaches much less;
and many γ end near 0, switching their channel off. The study CNN at twice its width
(32-64-128 channels), its head frozen too in both partial arms, against the same net trained
whole.
"""

from bnlab.lab.spec import Arm, Experiment

MODEL = {"norm": "scratch", "momentum": 0.9, "width": 2}

STUDY = Experiment(
    name="only-bn-trainable",
    title="Training BatchNorm and only BatchNorm (Frankle et al. 2021)",
    seed_source="study",
    description=(
        "The study CNN at twice its width (conv 32-64-128, BN, relu, global average pooling, "
        "Dense 10), Adam at 0.003, batch 64: every weight trained; only BN's γ and β (448 "
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
    batch_size=64,
    split={"validation": 5000},
    preprocessing="scale",
    steps=800,
    comparisons=(
        {"a": "bn-only", "b": "two-per-channel", "question": "γβ vs two random weights a channel"},
        {"a": "all", "b": "bn-only", "question": "everything vs γβ only"},
    ),
    extras=("gamma",),
    log_every={"batch": 100, "validation": 200},
    quick={"steps": 60, "limit": 2000, "seeds": 2},
)

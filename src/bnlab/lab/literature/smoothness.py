"""smoothness: Santurkar, Tsipras, Ilyas & Madry 2018, "How does batch normalization help
optimization?".

BN's benefit is not that it keeps each layer's input distribution stable: BN followed by a
random per-channel scale and shift, drawn anew at every training step (``noisy-bn``,
``bnlab.layers.noise.ChannelNoise``: s = exp(σ_s·z), b = σ_b·u, z, u ~ N(0, 1), σ_s = σ_b =
``NOISE_STD``; identity at inference), trains about as well as BN (their Fig. 2). What BN does
change is the landscape: along the gradient direction, the loss L(w − η·g) varies over a
narrower range of step sizes η, and the gradient changes less, ‖g(w) − g(w − η·g)‖, than
without BN (their Fig. 4, "loss landscape" and "gradient predictiveness").

The study CNN with BN, without (conv biases instead), and with noisy BN, all at one plain-SGD
learning rate at which all three train. Every ``log_every["batch"]`` steps each trial measures
both on one fixed batch (``bnlab.lab.literature.measures.Smoothness``, η = η₀ · {0.5, 1, 2, 4}).
The same seed gives BN and noisy BN the same initial weights and every arm the same batch order
(no BN has conv biases, so its weights differ).
"""

from bnlab.lab.spec import Arm, Claim, Experiment

NOISE_STD = 0.5  # σ_s and σ_b of ChannelNoise: scale ×(0.61, 1.65), shift ±0.5 at ±1σ
MARGIN = 1.5  # δ of "noisy BN ≈ BN", in points of test accuracy
LEARNING_RATE = 0.1

BN = {"norm": "scratch"}

STUDY = Experiment(
    name="smoothness",
    title="BN makes the landscape smoother, not the distributions stable (Santurkar et al. 2018)",
    seed_source="study",
    description=(
        "The study CNN (conv 16-32-64, relu, global average pooling, Dense 10) with BN, without "
        "(conv biases), and with noisy BN (a random per-channel scale exp(0.5·z) and shift "
        "0.5·u, z, u ~ N(0, 1), after every BN, new at every step; none at inference). Plain "
        "SGD at 0.1 for every arm, batch 64, 1,500 steps. Every 50 steps, on the first 128 "
        "training images in training mode: the loss L(w − η·g) and the gradient change "
        "‖g(w) − g(w − η·g)‖ at η ∈ {0.05, 0.1, 0.2, 0.4}."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    arms=(
        Arm("bn", "BN", BN, group="bn"),
        Arm("none", "no normalization", {"norm": "none"}, group="none"),
        Arm("noisy-bn", "noisy BN (random scale and shift after BN)",
            {**BN, "noise": {"scale_std": NOISE_STD, "shift_std": NOISE_STD}}, group="noisy-bn"),
    ),
    optimizer={"name": "SGD", "learning_rate": LEARNING_RATE},
    batch_size=64,
    split={"validation": 5000},
    preprocessing="scale",
    steps=1500,
    comparisons=(
        {"a": "bn", "b": "none", "question": "BN vs none"},
        {"a": "noisy-bn", "b": "bn", "question": "noisy BN vs BN"},
    ),
    extras=("smoothness",),
    claims=(
        Claim("Noisy BN (non-stationary distributions) tests as well as BN, within "
              f"{MARGIN} points", a="noisy-bn", b="bn", metric="points:test_accuracy",
              direction="equal", margin=MARGIN,
              paper="noisy BN ≈ BN in accuracy (their Fig. 2, VGG on CIFAR-10)",
              otherwise="the noise is too strong for this short budget: the net has not yet "
                        "learned to be robust to it"),
        Claim("BN tests better than no normalization", a="bn", b="none",
              paper="BN trains faster and generalizes better (their Fig. 1, 2)",
              otherwise="at this learning rate and budget the plain net catches up"),
        Claim("Noisy BN tests better than no normalization", a="noisy-bn", b="none",
              paper="noisy BN > standard (their Fig. 2)",
              otherwise="the noise costs more than BN gains at this budget"),
        Claim("The loss along the gradient varies less with BN (narrower loss band; mean of "
              "ln width)", a="bn", b="none", metric="log_loss_band_width_mean", direction="less",
              paper="loss landscape: BN's band much narrower (their Fig. 4a)",
              otherwise="without BN the plain net's gradient is small at this learning rate "
                        "(a slow, flat start), so a step along it moves the loss little"),
        Claim("The gradient changes less along the gradient with BN (mean of ln max change)",
              a="bn", b="none", metric="log_gradient_change_mean", direction="less",
              paper="gradient predictiveness: BN's change much smaller (their Fig. 4b)",
              otherwise="the gradient change is in each net's own parameters: BN's scale "
                        "invariance makes its gradients larger where its weights are small"),
    ),
    log_every={"batch": 50, "validation": 500},
    seeds=5,
    quick={"steps": 20, "limit": 500, "seeds": 2, "arms": ["bn", "none", "noisy-bn"]},
)

"""Three paper-shaped studies: named experiments with their papers' claims and a ``--quick`` form.

    ioffe-fig1   Ioffe & Szegedy 2015, Fig. 1: a 3 × 100 sigmoid MLP, BN before each sigmoid vs
                 none, from Glorot's and from the paper's small Gaussian initialization; steps to
                 80 % and 85 % test accuracy, and the drift of every last-layer unit's median.
    batch-size   Wu & He 2018 (Group Norm), Fig. 1 / Table 3, and Ioffe 2017 (Batch Renorm): BN
                 statistics over N images while the gradient is over 8·N (Ghost BN: per-GPU BN on
                 8 GPUs), N = 2..32, the same epochs and step decay for every N; BN evaluated with
                 its EMA, with PreciseBN and with test batches of N; GN, LN and renorm beside it.
    precise-bn   Wu & Johnson 2021: EMA statistics against bias-corrected EMA and PreciseBN, after
                 short training, at three learning rates, and after a learning-rate decay.

Each declares its claims (``bnlab.results.claims.Claim``) beside its arms; the report opens with
their verdicts on paired seeds, and its figures read each arm's ``group`` and ``x``.
Why each design is what it is, is in its ``description`` (and the report).

Cost: the three run the same 3 × 100 MLP (the seeds of an arm train together as one program),
sized for ``make studies`` on two cores; ``quick`` is ``bnlab run NAME --quick`` (a few thousand
images, two seeds).
"""

from bnlab.lab.spec import Arm, Claim, Experiment

TRAIN_IMAGES = 55_000  # Fashion-MNIST's training split less the 5,000 validation images
STEP_DECAY = {"name": "steps", "at": [0.5, 0.75], "factor": 0.1}
MLP = "sigmoid-mlp"  # 3 × (Dense 100 → norm → activation) → softmax; relu where stated

# ------------------------------------------------------------------------------ ioffe-fig1
IOFFE_STEPS = 6000
IOFFE_INITS = (("glorot", "Glorot"), ("gaussian", "N(0, 0.01²)"))


def _ioffe_arms():
    arms = []
    for init, init_label in IOFFE_INITS:
        for norm, label in (("keras", "BN before each sigmoid"), ("none", "no BN")):
            name = f"{'bn' if norm == 'keras' else 'none'}-{init}"
            arms.append(Arm(name, f"{label}, {init_label} init", {"norm": norm, "init": init},
                            group=init, x="BN" if norm == "keras" else "none"))
    return tuple(arms)


def _ioffe_claims():
    claims = []
    for init, label in IOFFE_INITS:
        for threshold in (0.8, 0.85):
            claims.append(Claim(
                f"{label} init: BN reaches {threshold * 100:g} % test accuracy in fewer steps",
                a=f"bn-{init}", b=f"none-{init}", metric=f"steps_to:test_accuracy:{threshold}",
                direction="less",
                paper="Fig. 1(a): BN reaches the no-BN net's accuracy far sooner (MNIST)",
                otherwise="both nets get there at about the same step at this learning rate, or "
                          "neither within 6,000 steps (counted at the last step)"))
        claims.append(Claim(
            f"{label} init: the last layer's sigmoid inputs drift less with BN",
            a=f"bn-{init}", b=f"none-{init}", metric="median_drift", direction="less",
            paper="Fig. 1(b, c): without BN the distribution drifts; with BN it stays steady",
            otherwise="BN's γ and β move its sigmoid inputs freely, and a net without BN that "
                      "barely learns (small init) barely moves its inputs either"))
    return tuple(claims)


IOFFE_FIG1 = Experiment(
    name="ioffe-fig1",
    title="BN keeps a sigmoid's input steady and trains faster (Ioffe & Szegedy 2015, Fig. 1)",
    seed_source="study",
    description=(
        "Ioffe & Szegedy 2015 §4.1: 3 fully connected hidden layers of 100 sigmoid units, BN "
        "before each sigmoid vs none, batch 60, plain SGD. Both the paper's 'small random "
        "Gaussian' initialization (N(0, 0.01²) here) and Keras's Glorot; learning rate 0.1, at "
        "which the sigmoid net without BN is slow (at 0.5, the previous setting, the Glorot net "
        "without BN caught up within 1,000 steps). The test accuracy every 100 steps gives the "
        "steps to reach 80 % and 85 % (a seed that never gets there counts at its last step). "
        "The 15/50/85th percentiles of every last-layer sigmoid's input over 1,000 test images, "
        "in training mode (batch statistics: the inference mode's moving statistics would start "
        "at (0, 1), not at the network), every 200 steps; the drift of a unit is the range of "
        "its median over training, and a net's drift the mean over its 100 units."
    ),
    dataset="fashion_mnist",
    model=MLP,
    arms=_ioffe_arms(),
    optimizer={"name": "SGD", "learning_rate": 0.1},
    batch_size=60,
    split={"validation": 5000},
    preprocessing="scale",
    steps=IOFFE_STEPS,
    comparisons=tuple({"a": f"bn-{init}", "b": f"none-{init}", "question": f"BN vs none, {init}"}
                      for init, _ in IOFFE_INITS),
    log_every={"batch": 100, "validation": 100},
    extras=("test_curve",),
    claims=_ioffe_claims(),
    probe={"layers": ["activation:-1"], "unit": 0, "mode": "training", "split": "test",
           "images": 1000, "every": 200, "per_unit": True},
    seeds=8,
    quick={"steps": 600, "limit": 3000, "seeds": 2},
)

# ------------------------------------------------------------------------------ batch-size
GROUP_SIZES = (2, 4, 8, 16, 32)  # N: the images BN normalizes over ("per GPU")
WORKERS = 8  # the GN paper's 8 GPUs: the gradient is over 8·N images
BASE_N = 32
BATCH_EPOCHS = 2
BATCH_STEPS = BATCH_EPOCHS * TRAIN_IMAGES // (WORKERS * BASE_N)  # at N = 32 (batch 256)
RENORM_CLIPPING = {"rmax": 3.0, "dmax": 5.0}
# The renorm paper's schedule, 5k steps of BN, dmax open by 25k, rmax by 40k, as fractions of
# the training (its 160k-step Inception run's 3 %, 16 %, 25 %, rounded up)
RENORM_FRACTIONS = {"hold": 0.05, "dmax_at": 0.15, "rmax_at": 0.25}
# (norm, label, the arm's model for N, the N it runs at)
BATCH_NORMS = (
    ("bn", "BN (statistics of N)", lambda n: {"norm": "ghost", "norm_options": {
        "virtual_batch_size": n}}, GROUP_SIZES),
    ("group", "GroupNorm (G = 25)", lambda n: {"norm": "group"}, (2, 8, 32)),
    ("layer", "LayerNorm", lambda n: {"norm": "layer"}, (2, 32)),
    ("renorm", "Batch Renorm (relaxed)", lambda n: {"norm": "renorm", "norm_options": {
        "virtual_batch_size": n, "renorm_clipping": dict(RENORM_CLIPPING),
        "renorm_relaxation": _relaxation(n)}}, (2, 4)),
)


def _relaxation(n):
    steps = BATCH_STEPS * BASE_N // n
    return {k: max(1, round(f * steps)) for k, f in RENORM_FRACTIONS.items()}


def batch_arm_name(norm, n):
    return f"{norm}-n{n}"


def _batch_arms():
    return tuple(Arm(batch_arm_name(norm, n), f"{label}, N = {n}",
                     {**model(n), "activation": "relu"}, batch_size=WORKERS * n, group=norm, x=n)
                 for norm, label, model, sizes in BATCH_NORMS for n in sizes)


WU_HE = "Wu & He 2018, Table 3 (ResNet-50, ImageNet): BN 23.6 % at N = 32, 34.7 % at N = 2"
NOT_NOISY = ("2 epochs of an MLP are too short for the noise of small-N statistics to cost "
             "accuracy, or the optimization at small N (more, smaller steps) makes up for it")
NOT_LINEAR = ("the linear scaling rule does not hold for this net from gradient batches of 256 "
              "down to 16 in 2 epochs: more, smaller steps train it to a different error")
BATCH_CLAIMS = (
    Claim("BN's error rises from N = 32 to N = 2 (EMA statistics)", a="bn-n2", b="bn-n32",
          metric="error:test_accuracy", direction="greater", paper=WU_HE + " (+11.1 pt)",
          otherwise=NOT_NOISY),
    Claim("… with PreciseBN statistics (not staleness)", a="bn-n2", b="bn-n32",
          metric="error:precise_test_accuracy", direction="greater", paper=WU_HE,
          otherwise=NOT_NOISY),
    Claim("… normalizing test batches of N as in training (the small-batch effect itself)",
          a="bn-n2", b="bn-n32", metric="error:batch_test_accuracy", direction="greater",
          paper=WU_HE,
          otherwise=NOT_NOISY),
    Claim("GN's error does not depend on N (within ±1.5 pt)", a="group-n2", b="group-n32",
          metric="error:test_accuracy", direction="equal", margin=1.5,
          paper="GN 24.1 % at N = 32, 24.1 % at N = 2",
          otherwise=NOT_LINEAR),
    Claim("LN's error does not depend on N (within ±1.5 pt)", a="layer-n2", b="layer-n32",
          metric="error:test_accuracy", direction="equal", margin=1.5,
          paper="LN is batch-independent (Wu & He: 25.3 % at 32, from their Fig. 1)",
          otherwise=NOT_LINEAR),
    Claim("BN loses more from N = 32 to 2 than GN does", a=("bn-n2", "bn-n32"),
          b=("group-n2", "group-n32"), metric="error:test_accuracy", direction="greater",
          paper="+11.1 pt against +0.0 pt",
          otherwise="what N does to the optimization, shared by every norm, is as large as "
                    "what it does to BN's statistics"),
    Claim("Batch Renorm recovers part of BN's loss at N = 2", a="renorm-n2", b="bn-n2",
          metric="error:test_accuracy", direction="less",
          paper="Ioffe 2017 §4.3, microbatches of 4: 76.5 % with renorm against 74.2 % (BN)",
          otherwise="at N = 2 every σ_B is of two values, so r and d sit at their clips: the "
                    "clipped correction cannot undo that noise (the paper used N = 4)"),
    Claim("… and at N = 4", a="renorm-n4", b="bn-n4", metric="error:test_accuracy",
          direction="less", paper="as above",
          otherwise="2 epochs leave few steps after the relaxation for r and d to act"),
)

BATCH_SIZE = Experiment(
    name="batch-size",
    title="Normalization against the images it normalizes over (Wu & He 2018; Ioffe 2017)",
    seed_source="study",
    description=(
        "BN over N images while the gradient is over 8·N, as per-GPU BN on the GN paper's 8 "
        "GPUs (Ghost BN with groups of N does exactly that), N = 2, 4, 8, 16, 32: the gradient "
        "batch is 16..256 and the learning rate 0.1 · N/32 (the GN paper's rule; SGD, momentum "
        "0.9), for the same 2 epochs at every N with a step decay (× 0.1 at half and three "
        "quarters of the training). The model is the 3 × 100 MLP with BN before a ReLU: a "
        "Dense layer's BN sees only N values a unit, so small N does make its statistics noisy "
        "(a conv layer sees N·H·W). BN is evaluated three ways on the same weights: with its "
        "moving averages (EMA, momentum 0.99), with PreciseBN (population statistics of 6,400 "
        "training images, the weights fixed), and on test batches normalized as in training "
        "(groups of N): staleness and the small-batch effect are separate rows. GroupNorm (25 "
        "groups of 4 units), LayerNorm and Batch Renorm (statistics of N, r and d clipped at "
        "rmax 3, dmax 5, opened after 5 % of the training as the paper's schedule does) beside "
        "it. The same seed gives every arm the same initial weights; arms of one N also see "
        "the same batches."
    ),
    dataset="fashion_mnist",
    model=MLP,
    arms=_batch_arms(),
    optimizer={"name": "SGD", "learning_rate": 0.1, "momentum": 0.9},
    batch_size=WORKERS * BASE_N,
    split={"validation": 5000},
    preprocessing="scale",
    steps=BATCH_STEPS,
    schedule=STEP_DECAY,
    comparisons=(
        {"a": "group-n2", "b": "bn-n2", "question": "GN vs BN at N = 2"},
        {"a": "renorm-n2", "b": "bn-n2", "question": "renorm vs BN at N = 2"},
    ),
    log_every={"batch": 43, "validation": 86},
    extras=("batch_statistics", "precise_bn"),
    precise_samples=(6400,),
    claims=BATCH_CLAIMS,
    seeds=24,  # one unit of seeds trained together (train.MAX_TOGETHER): intervals of ±1.5 pt
    quick={"steps": 40, "limit": 2000, "seeds": 2,
           "arms": [batch_arm_name(n, s) for n in ("bn", "renorm", "group") for s in (2, 32)
                    if not (n == "renorm" and s == 32)] + ["renorm-n4", "bn-n4", "layer-n2",
                                                             "layer-n32"]},
)

# ------------------------------------------------------------------------------ precise-bn
PRECISE_STEPS = 2000
PRECISE_SHORT = 0.05  # 100 of the 2,000 steps
PRECISE_RATES = (0.01, 0.05, 0.25)


def _bn(lr, label, **arm):
    # BN over the whole batch of 32, written as Ghost BN with one group of 32 (the same
    # computation), so that PreciseBN and the evaluations run in calls of 800 images
    return Arm(f"lr{lr}" + ("-decay" if arm.get("schedule") else "")
               + ("-short" if arm.get("length") else ""), label,
               {"norm": "ghost", "activation": "relu", "momentum": 0.99,
                "norm_options": {"virtual_batch_size": 32}},
               training={"learning_rate": lr}, group=arm.pop("group"), x=arm.pop("x"), **arm)


PRECISE_ARMS = (
    _bn(0.05, "lr 0.05, 100 steps", length=PRECISE_SHORT, group="short", x=0.05),
    *(_bn(lr, f"lr {lr}, 2,000 steps", group="constant", x=lr) for lr in PRECISE_RATES),
    _bn(0.25, "lr 0.25, step decay, 2,000 steps", schedule=STEP_DECAY, group="decay", x=0.25),
)


NOT_FASTER = ("with BN the weights' scale grows under a large learning rate, so the effective "
              "step η/‖w‖² shrinks and the weights need not move faster (van Laarhoven 2017)")


def _gap(arm):
    """PreciseBN's accuracy minus the EMA's, on the same weights (one arm, both metrics)."""
    return {"a": (arm, arm), "metric": ("precise_test_accuracy", "test_accuracy")}


PRECISE_CLAIMS = (
    Claim("After 100 steps at momentum 0.99 the EMA's error is mostly its initial bias "
          "(bias correction gains more than PreciseBN adds to it)",
          a=("lr0.05-short", "lr0.05-short"), metric=("debiased_test_accuracy", "test_accuracy"),
          b=("lr0.05-short", "lr0.05-short"),
          metric_b=("precise_test_accuracy", "debiased_test_accuracy"), direction="greater",
          paper="Wu & Johnson 2021 §3: EMA statistics are inaccurate early in training",
          otherwise="the weights move fastest in the first steps, so the lag of an EMA over "
                    "them is as large as its initial bias"),
    Claim("PreciseBN beats the EMA after 2,000 steps at lr 0.25", **_gap("lr0.25"),
          direction="greater", paper="§3.1: the EMA lags when the weights move fast",
          otherwise=NOT_FASTER),
    Claim("The EMA's lag grows with the learning rate (0.25 against 0.01)", **_gap("lr0.25"),
          b=("lr0.01", "lr0.01"), metric_b=("precise_test_accuracy", "test_accuracy"),
          direction="greater", paper="§3.1: larger steps, staler EMA",
          otherwise=NOT_FASTER),
    Claim("After the learning rate decays the EMA catches up (gap within ±0.5 pt)",
          **_gap("lr0.25-decay"), direction="equal", margin=0.005,
          paper="§3.1: the EMA is accurate once the weights settle",
          otherwise="the decay came too late for the EMA (about 100 steps at 0.99) to settle"),
    Claim("3,200 images suffice for PreciseBN (within ±0.5 pt of 32,000)", a="lr0.05",
          b="lr0.05", metric="precise_test_accuracy", metric_b="precise_test_accuracy_32000",
          direction="equal", margin=0.005,
          paper="§3.2: PreciseBN needs a few thousand samples (fvcore: 200 batches)",
          otherwise="the statistics vary more between images than 3,200 of them average out"),
    Claim("320 images do not (worse than 32,000)", a="lr0.05", b="lr0.05",
          metric="precise_test_accuracy_320", metric_b="precise_test_accuracy_32000",
          direction="less", paper="§3.2: too few samples give a noisy estimate",
          otherwise="a Dense unit's BN sees 320 values, which already fix its mean and "
                    "variance to a few percent: the paper's deeper conv nets need more"),
)

PRECISE_BN = Experiment(
    name="precise-bn",
    title="EMA statistics against bias-corrected EMA and PreciseBN (Wu & Johnson 2021)",
    seed_source="study",
    description=(
        "The 3 × 100 MLP with BN before each ReLU, batch 32, SGD with momentum 0.9, BN's EMA "
        "at momentum 0.99 (Keras's default). Training-mode BN never reads its moving "
        "statistics, so every way of evaluating an arm reads the same trained weights: the "
        "EMA; the EMA with the weight still on its initial (0, 1) removed (bias correction: "
        "after t steps that weight is 0.99ᵗ, 37 % at t = 100), which leaves only the lag; and "
        "PreciseBN (population statistics with the weights fixed) from 320, 3,200 (the "
        "reference) and 32,000 training images. Arms: 100 steps (initial bias), 2,000 steps at "
        "learning rates 0.01, 0.05 and 0.25 (the faster the weights move, the more the EMA "
        "should lag), and 2,000 steps at 0.25 with a step decay (× 0.1 at half and three "
        "quarters), after which the EMA should catch up with PreciseBN."
    ),
    dataset="fashion_mnist",
    model=MLP,
    arms=PRECISE_ARMS,
    optimizer={"name": "SGD", "learning_rate": 0.05, "momentum": 0.9},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    steps=PRECISE_STEPS,
    comparisons=({"a": "lr0.25-decay", "b": "lr0.25", "question": "decay vs constant at 0.25"},),
    extras=("precise_bn", "debiased_ema"),
    precise_samples=(3200, 320, 32000),
    log_every={"batch": 100, "validation": 500},
    claims=PRECISE_CLAIMS,
    seeds=48,  # two units: the 100-step arm's paired spread needs them for ±1.5 pt
    quick={"steps": 400, "limit": 3000, "seeds": 2},
)

STUDIES = (IOFFE_FIG1, BATCH_SIZE, PRECISE_BN)

# Not a study: the conv workload ``make bench`` times against PyTorch (bench/run.py's study
# section): the study CNN with BN at whole batches of B, learning rate 0.02 · B/32.
CNN_BATCHES = Experiment(
    name="study-cnn-batches",
    title="The study CNN with BN at batches 2, 8 and 32 (the bench's conv workload)",
    seed_source="study",
    description=(
        "The study CNN (3 conv layers 16-32-64, BN after each, global average pooling), SGD "
        "with momentum 0.9 at 0.02 · B/32 for as many images at every batch size B. What "
        "`make bench` times against PyTorch; the batch-size study is `batch-size`."
    ),
    dataset="fashion_mnist",
    model="study-cnn",
    arms=tuple(Arm(f"bn-b{b}", f"BN, batch {b}", {"norm": "scratch"}, batch_size=b, group="bn",
                   x=b) for b in (2, 8, 32)),
    optimizer={"name": "SGD", "learning_rate": 0.02, "momentum": 0.9},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    steps=1700,
    log_every={"batch": 85, "validation": 170},
)

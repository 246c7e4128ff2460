"""``scale-invariance`` (van Laarhoven 2017; Hoffer et al. 2018; Arora et al. 2019).

Weights in front of BN are scale-invariant, so plain SGD only ever grows them,
‖w_{t+1}‖² = ‖w_t‖² + η²‖g_t‖² (``bnlab.tools.scale_invariance``), their effective learning rate
is η/‖w‖², and weight decay acts only through ‖w‖: it holds ‖w‖ at the level where decay and
growth balance, 2ηλ‖w‖² ≈ η²‖g‖². Seeds 000/004's MLP with BN before each relu (784 → BN → 300
→ BN → relu → 100 → BN → relu → 10; its two hidden kernels are the scale-invariant ones), plain
SGD at η ∈ {0.01, 0.1, 1} × weight decay λ ∈ {0, 5e-4}, and the arm (c·w₀, c²·η) with c = √10
against (w₀, η = 0.1): the same network function at every step in exact arithmetic.

Decay relaxes ‖w‖⁴ to its level at the rate 4ηλ per step (from the balance above): 1/(4ηλ) = 500
steps at η = 1, 5,000 at 0.1 and 50,000 at 0.01. So within this study's 2,000 steps only η = 1
can level off, and the claim that it does is made at η = 1 alone (chosen from this arithmetic,
before any run).
"""

import math

from bnlab.lab.literature import trains  # noqa: F401  (registers the claims' "trains" metrics)
from bnlab.lab.spec import Arm, Claim, Experiment
from bnlab.results import scale_invariance as section, studies as sections

RATES = (0.01, 0.1, 1.0)
DECAY = 5e-4
RESCALE = math.sqrt(10.0)  # c: the rescaled arm's invariant kernels take c²·0.1 = 1.0
MODEL = {"norm": "keras", "placement": "before", "activation": "relu"}
TOLERANCE = section.TOLERANCE  # δ of the identity claim, in the section that explains a miss


def arm_name(rate, decay):
    return f"lr{rate:g}" + ("-wd" if decay else "")


ARMS = tuple(
    Arm(arm_name(rate, decay), f"η = {rate:g}" + (f", weight decay {DECAY:g}" if decay else ""),
        MODEL, training={"learning_rate": rate, **({"weight_decay": DECAY} if decay else {})},
        group="weight decay" if decay else "no decay", x=rate)
    for rate in RATES for decay in (0.0, DECAY)
) + (Arm("rescaled", f"(√10·w₀, 10·η) on the invariant kernels, η = 0.1 elsewhere", MODEL,
         training={"learning_rate": 0.1, "invariant_scale": RESCALE}, group="rescaled", x=0.1),)

CLAIMS = tuple(
    Claim(f"‖w_(t+1)‖² = ‖w_t‖² + η²‖g_t‖² per step at η = {rate:g} (99th percentile of the "
          "relative error over steps)", a=arm_name(rate, 0), metric="identity_residual_p99",
          direction="equal", margin=TOLERANCE,
          paper="exact for a scale-invariant loss (Arora et al. 2019, Lemma 2.4)")
    for rate in RATES
) + (
    Claim("without weight decay ‖w‖ keeps growing (η = 1, second half of training)",
          a="lr1", metric="w_growth_second_half", direction="greater",
          paper="‖w‖ only grows under SGD (van Laarhoven 2017; Hoffer et al. 2018)"),
    Claim("weight decay stops the growth of ‖w‖ (η = 1)", a="lr1", b="lr1-wd",
          metric="w_growth_second_half", direction="greater",
          paper="decay balances the growth (van Laarhoven 2017)"),
    Claim("with weight decay ‖w‖ levels off (η = 1: Σ‖w‖² within ±5 % over the second half)",
          a="lr1-wd", metric="w_growth_second_half", direction="equal", margin=0.05,
          paper="an equilibrium norm, 2ηλ‖w‖² = η²‖g‖²"),
    Claim("(√10·w₀, 10·η) predicts like (w₀, η): test accuracy within ±0.5 points",
          a="rescaled", b="lr0.1", metric="points:test_accuracy", direction="equal",
          margin=0.5, paper="the same function at every step (Hoffer et al. 2018, §2)"),
    Claim("η = 1 still trains: test accuracy above the 50 % bar", a="lr1",
          metric="test_points_over_bar", direction="greater",
          paper="BN nets train at η = 1 (Arora et al. 2019: any η, auto rate-tuning)"),
)

STUDY = Experiment(
    name="scale-invariance",
    title="Weights in front of BN are scale-invariant (van Laarhoven 2017; Hoffer et al. 2018; "
          "Arora et al. 2019)",
    seed_source="study",
    description=(
        "Seeds 000/004's MLP with BN before each relu, plain SGD (bnlab.tools.scale_invariance's "
        "TracedSGD: Keras's SGD that records ‖w‖², ‖g‖² and the change of ‖w‖² of every kernel "
        "at every step), batch 32, 2,000 steps, at η = 0.01, 0.1 and 1, each without and with "
        "weight decay 5e-4 (Keras's decoupled form, w ← (1 − ηλ)·w before the step); and the "
        "arm (√10·w₀, 10·η) on the two scale-invariant kernels against (w₀, η = 0.1)."
    ),
    dataset="fashion_mnist",
    model="mlp",
    arms=ARMS,
    optimizer={"name": "TracedSGD", "learning_rate": 0.1},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="scale",
    steps=2000,
    comparisons=({"a": "rescaled", "b": "lr0.1", "question": "(c·w₀, c²η) vs (w₀, η)"},),
    extras=("weight_norms",),
    log_every={"batch": 100, "validation": 500},
    quick={"steps": 60, "limit": 2000, "seeds": 2, "arms": ["lr0.1", "lr1-wd", "rescaled"]},
    claims=CLAIMS,
    seeds=5,
)

sections.SECTIONS[STUDY.name] = section.section

"""``learning-rate-range`` (Bjorck, Gomes, Selman & Weinberger 2018, "Understanding Batch
Normalization"; Ioffe & Szegedy 2015's BN-x5 and BN-x30).

BN allows much larger learning rates. Seed 002's 20-layer MLP (20 × Dense 100 relu → BN, and the
same without BN), plain SGD over a half-decade grid of η from 1e-4 to 1, one short fixed budget
for every η. A trial *trains* when its loss stays finite and its validation accuracy reaches 50 %
(``bnlab.lab.literature.trains``); the range of a norm is its number of grid points that train,
in half-decades. The claim on the range reads the grid of one seed at once, so it is judged in
the study's own section (``bnlab.results.learning_rate_range``); the claim at a small η is an
ordinary paired claim.
"""

import functools

from bnlab.lab.literature import trains
from bnlab.lab.spec import Arm, Claim, Experiment
from bnlab.results import learning_rate_range as section, studies as sections

RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # half-decades
# BN's momentum 0.9: at large η the weights move fast, and with 0.99 the moving statistics the
# test set is scored with would lag them (the EMA's error, not the learning rate's).
NORMS = (("bn", {"norm": "keras", "placement": "after", "momentum": 0.9}, "BN"),
         ("none", {"norm": "none"}, "no BN"))
SMALL = 1e-4


def arm_name(norm, rate):
    return f"{norm}-lr{rate:g}"


ARMS = tuple(Arm(arm_name(norm, rate), f"{label}, η = {rate:g}", model,
                 training={"learning_rate": rate}, group=norm, x=rate)
             for norm, model, label in NORMS for rate in RATES)

CLAIMS = (
    Claim(f"at a small η ({SMALL:g}) BN and no BN are close (test accuracy within ±2 points)",
          a=arm_name("bn", SMALL), b=arm_name("none", SMALL), metric="points:test_accuracy",
          direction="equal", margin=2.0,
          paper="at small rates both train alike (Bjorck et al. 2018, Fig. 1)"),
    Claim("at η = 1 BN trains and no BN does not (test accuracy over the 50 % bar)",
          a=arm_name("bn", 1.0), b=arm_name("none", 1.0), metric="test_points_over_bar",
          direction="greater", paper="BN trains at rates where the plain net diverges"),
)

# Judged on the whole grid of each seed (bnlab.results.learning_rate_range): (statement, paper,
# the decades BN's range must exceed no-BN's by)
RANGE_CLAIMS = (
    ("the range of η that trains is wider with BN", "much larger learning rates", 0.0),
    ("the range of η that trains is wider with BN by at least a decade",
     "BN-x30: 30 times Inception's rate (Ioffe & Szegedy 2015)", 1.0),
)

STUDY = Experiment(
    name="learning-rate-range",
    title="BN allows much larger learning rates (Bjorck et al. 2018; Ioffe & Szegedy 2015)",
    seed_source="study",
    description=(
        "Seed 002's 20-layer MLP (Dense 100 relu → BN, 20 times; and without BN) on "
        "standardized Fashion-MNIST, plain SGD at η = 1e-4, 3e-4, ..., 0.3, 1 (half-decades), "
        "batch 32, 600 steps for every η, BN's momentum 0.9 (its moving statistics follow the "
        "weights within ~10 steps). A trial trains when its loss stays finite and its "
        "validation accuracy reaches 50 %; the range of a norm is how many grid points train."
    ),
    dataset="fashion_mnist",
    model="deep-mlp",
    arms=ARMS,
    optimizer={"name": "SGD", "learning_rate": 0.01},
    batch_size=32,
    split={"validation": 5000},
    preprocessing="standardize",
    steps=600,
    comparisons=(),
    log_every={"batch": 100, "validation": 300},
    quick={"steps": 30, "limit": 1000, "seeds": 2,
           "arms": [arm_name(n, r) for n in ("bn", "none") for r in (1e-4, 1.0)]},
    claims=CLAIMS,
    seeds=5,
)

sections.SECTIONS[STUDY.name] = functools.partial(section.section, range_claims=RANGE_CLAIMS,
                                                  trained=trains.trained)

"""``depth-at-init`` (Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A Mean Field
Theory of Batch Normalization", ICLR).

At initialization a deep fully connected BN network without skip connections has gradients that
explode with depth, and no choice of initial weight variance cures it (BN makes the network
indifferent to the weights' scale). Yang et al.'s ReLU nets: Dense → BN → relu, repeated; here
``relu-mlp`` (``bnlab.models``) of 256 units at depths 5 to 60 with BN, and the same nets without
BN at He initialization (the variance at which a ReLU net's gradients neither vanish nor explode:
the control). Each trial measures, on its first training batch and before any step, ‖∂L/∂W_l‖ of
every layer of its own net and ‖∂L/∂W_1‖ of the same net at each depth of
``bnlab.lab.literature.measures.DEPTHS`` up to its own (``init_gradients``); the depth-60 and
depth-5 nets then train for a short budget at SGD 0.01, seed 002's rate for its 20-layer net.

The rate: the paper's own statement of the ReLU value could not be retrieved for this study (only
its abstract and summaries were reachable). Kyle Luther's derivation of Yang et al.'s result for
ReLU ("Why Batch Norm causes exploding gradients", 2020) gives a gradient norm that grows by
√(π/(π − 1)) ≈ 1.21 per layer, i.e. ln ‖∂L/∂W_1‖ rising by ½ ln(π/(π − 1)) ≈ 0.192 per layer of
depth; that is the rate the claim compares with (``RATE``). The paper's Fig. 3 (as its summaries
quote it): on MNIST, SGD, "networks deeper than about 50 layers are untrainable regardless of
batch size".
"""

import functools
import math

from bnlab.lab.literature import trains  # noqa: F401  (registers the claims' "trains" metrics)
from bnlab.lab.literature.measures import DEPTHS
from bnlab.results import claims as claim_metrics
from bnlab.lab.spec import Arm, Claim, Experiment
from bnlab.results import depth_at_init as section, studies as sections
from bnlab.tools.gradients import log_slope

RATE = 0.5 * math.log(math.pi / (math.pi - 1))  # ≈ 0.1916 per layer (module docstring)
UNITS = 256
# Momentum 0.9: the moving statistics follow the weights within ~10 steps, so the short budget's
# test accuracy measures training, not the moving averages' initial bias or lag.
BN = {"norm": "keras", "momentum": 0.9}


def _slope(results, history):
    """The per-seed slope of ln ‖∂L/∂W_1‖ against depth over the depths the trial measured."""
    found = [(d, results.get(f"log_init_gradient_first_d{d}")) for d in DEPTHS]
    found = [(d, v) for d, v in found if v is not None]
    if len(found) < 2:
        return None
    return log_slope([d for d, _ in found], [math.exp(v) for _, v in found])


claim_metrics.DERIVED["init_gradient_log_slope"] = _slope
claim_metrics.DERIVED["init_gradient_slope_over_paper"] = (
    lambda results, history: None if _slope(results, history) is None
    else _slope(results, history) - RATE)


def _arm(norm, depth):
    label = "BN" if norm == "bn" else "no BN (He init)"
    return Arm(f"{norm}-d{depth}", f"{label}, {depth} × {UNITS}",
               {"norm": "none", "placement": "before", "depth": depth, "units": UNITS}
               | (BN if norm == "bn" else {}), group=norm, x=depth)


ARMS = tuple(_arm(norm, depth) for depth in (60, 5) for norm in ("bn", "none"))

CLAIMS = (
    Claim("with BN, ln ‖∂L/∂W₁‖ at init grows with depth (depth 60 − depth 5)", a="bn-d60",
          metric="log_init_gradient_first_d60", b="bn-d60",
          metric_b="log_init_gradient_first_d5", direction="greater",
          paper=f"exponential in depth: +{55 * RATE:.1f} from 5 to 60 layers at the ReLU rate"),
    Claim(f"with BN, the growth per layer is the ReLU rate ½ ln(π/(π − 1)) = {RATE:.3f} "
          "(slope over depths 5-60, within ±0.03)", a="bn-d60",
          metric="init_gradient_slope_over_paper", direction="equal", margin=0.03,
          paper=f"√(π/(π − 1)) ≈ 1.21 a layer (Luther 2020's derivation of Yang et al.)"),
    Claim("without BN (He init) ln ‖∂L/∂W₁‖ stays flat with depth (slope within ±0.03 a layer)",
          a="none-d60", metric="init_gradient_log_slope", direction="equal", margin=0.03,
          paper="no explosion at the edge of chaos without BN"),
    Claim("the deepest BN net does not train at η = 0.01 (test accuracy below the 50 % bar)",
          a="bn-d60", metric="test_points_over_bar", direction="less",
          paper="deeper than about 50 layers: untrainable (Fig. 3, MNIST)"),
    Claim("the deepest BN net trains worse than the shallow one", a="bn-d60", b="bn-d5",
          metric="points:test_accuracy", direction="less",
          paper="trainability falls with depth (Fig. 3)"),
)

STUDY = Experiment(
    name="depth-at-init",
    title="BN's gradients explode with depth at initialization (Yang et al. 2019)",
    seed_source="study",
    description=(
        f"ReLU MLPs of {UNITS} units (Dense without bias → BN → relu, or Dense with bias → relu "
        "at He initialization), on standardized Fashion-MNIST. Before training, on the trial's "
        "first batch of 64: ‖∂L/∂W_l‖ of every layer, and the first layer's at depths "
        f"{', '.join(map(str, DEPTHS))} (the same seed's net built that deep). Then the "
        "depth-60 and depth-5 nets train 150 steps of plain SGD at η = 0.01 (BN's momentum 0.9, "
        "so that its moving statistics have caught up with the weights when the test set is "
        "scored)."
    ),
    dataset="fashion_mnist",
    model="relu-mlp",
    arms=ARMS,
    optimizer={"name": "SGD", "learning_rate": 0.01},
    batch_size=64,
    split={"validation": 5000},
    preprocessing="standardize",
    steps=150,
    comparisons=({"a": "bn-d60", "b": "bn-d5", "question": "BN: 60 vs 5 layers"},
                 {"a": "bn-d60", "b": "none-d60", "question": "60 layers: BN vs none"}),
    extras=("init_gradients",),
    log_every={"batch": 50, "validation": 150},
    quick={"steps": 20, "limit": 1000, "seeds": 2, "arms": ["bn-d5", "none-d5"]},
    claims=CLAIMS,
    seeds=5,
)

sections.SECTIONS[STUDY.name] = functools.partial(section.section, rate=RATE)

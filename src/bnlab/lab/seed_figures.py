"""What the seed notebooks printed (../shared/seeds/), as data, so that reports set them beside
bnlab's numbers for the same arm.

Each figure names the arm it belongs to, the notebook that printed it, and what it is: a metric of
the history at an epoch (or a step, for step-based experiments), or a final result
(``test_accuracy``, ``single_sample_accuracy``, ``params_total``...) when ``at`` is None. The
seeds print one run each; bnlab's side is the mean ± 95% CI over seeds. ``dataset`` is the data
the notebook used: seeds 001 and 003 trained on MNIST, which bnlab can run only where MNIST can be
had, so their figures are comparable with bnlab's only on MNIST.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SeedFigure:
    arm: str
    notebook: str   # "004": the seed notebook that printed it
    metric: str     # a history metric (val_accuracy, loss) or a result key (test_accuracy)
    value: float
    at: int | None = None  # epoch, or step for step-based experiments; None: a final result
    dataset: str = "fashion_mnist"


def _epochs(arm, notebook, metric, values):
    return tuple(SeedFigure(arm, notebook, metric, v, at=e) for e, v in values.items())


SEED_FIGURES: dict[str, tuple[SeedFigure, ...]] = {
    "bn-placement": (
        SeedFigure("baseline", "004", "params_total", 266_610),
        *_epochs("baseline", "004", "val_accuracy", {1: 0.7160, 8: 0.8282}),
        *_epochs("baseline", "004", "loss", {1: 1.2819, 8: 0.5172}),
        SeedFigure("bn-after", "004", "params_total", 271_346),  # 266,610 + 4 × (784 + 300 + 100)
        SeedFigure("bn-after", "004", "params_non_trainable", 2_368),
        *_epochs("bn-after", "004", "val_accuracy", {1: 0.8156, 8: 0.8670}),
        *_epochs("bn-after", "004", "loss", {1: 0.8293, 8: 0.4124}),
    ),
    "deep-mlp": (
        SeedFigure("bn", "002", "params_total", 279_410),
        SeedFigure("bn", "002", "params_non_trainable", 4_000),
        *_epochs("bn", "002", "val_accuracy", {1: 0.7498, 10: 0.8600}),
        *_epochs("bn", "002", "loss", {1: 1.0780, 10: 0.4446}),
        SeedFigure("bn", "002", "test_accuracy", 0.8540),
    ),
    "lenet-bn": (
        SeedFigure("scratch", "001", "test_accuracy", 0.9511, dataset="mnist"),
        SeedFigure("keras", "001", "test_accuracy", 0.9503, dataset="mnist"),
    ),
    "deep-cnn": (
        SeedFigure("scratch", "003", "val_accuracy", 0.8030, at=500, dataset="mnist"),
        SeedFigure("scratch", "003", "val_accuracy", 0.9584, at=800, dataset="mnist"),
        SeedFigure("scratch", "003", "test_accuracy", 0.9569, dataset="mnist"),
        SeedFigure("scratch", "003", "single_sample_accuracy", 0.96, dataset="mnist"),
    ),
}


def for_report(experiment: str) -> list[dict]:
    """The figures of ``experiment`` as plain dicts, for bnlab.results.report."""
    return [asdict(f) for f in SEED_FIGURES.get(experiment, ())]

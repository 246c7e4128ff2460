"""What "it trains" means in the literature studies, as claim metrics (``bnlab.results.claims``'
``DERIVED``): the training loss stayed finite and the validation accuracy reached ``BAR``.

    trains                  1 when the trial trained, else 0
    test_points_over_bar    100 · (test accuracy − BAR): > 0 when the test accuracy clears the bar
                            (a diverged trial counts as chance, 10 %)

``BAR`` is fixed before any run: half the images right, five times chance on ten classes.
"""

import math

from bnlab.results import claims

BAR = 0.5
CHANCE = 0.1


def trained(results):
    """Whether a trial trained: finite loss and validation accuracy ≥ ``BAR``."""
    accuracy = results.get("val_accuracy")
    return (not results.get("diverged") and accuracy is not None and math.isfinite(accuracy)
            and accuracy >= BAR)


def _test_points_over_bar(results, history):
    accuracy = results.get("test_accuracy")
    if results.get("diverged") or accuracy is None or not math.isfinite(accuracy):
        accuracy = CHANCE
    return 100.0 * (accuracy - BAR)


claims.DERIVED["trains"] = lambda results, history: float(trained(results))
claims.DERIVED["test_points_over_bar"] = _test_points_over_bar

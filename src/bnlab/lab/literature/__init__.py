"""The BN literature's studies beyond the first three (``bnlab.lab.studies``): one module each,
with the study's ``Experiment`` (its arms, settings, ``--quick`` form and the paper's claims).

``STUDIES`` lists them in the order ``bnlab list`` shows them; ``bnlab.lab.experiments``
registers them beside the seed experiments and the first studies.
"""

from bnlab.lab.literature import (depth_at_init, dropout_variance_shift, fine_tuning_bn,
                                  learning_rate_range, only_bn_trainable, scale_invariance,
                                  smoothness)

STUDIES = (
    scale_invariance.STUDY,
    depth_at_init.STUDY,
    learning_rate_range.STUDY,
    smoothness.STUDY,
    dropout_variance_shift.STUDY,
    only_bn_trainable.STUDY,
    fine_tuning_bn.STUDY,
)

"""The BN literature's studies beyond the first three (``bnlab.lab.studies``): one module each,
with the study's ``Experiment`` (its arms, settings, ``--quick`` form and the paper's claims).

``STUDIES`` lists them in the order ``bnlab list`` shows them; ``bnlab.lab.experiments``
registers them beside the seed experiments and the first studies.
"""

from bnlab.lab.literature import dropout_variance_shift, fine_tuning_bn, only_bn_trainable

STUDIES = (
    dropout_variance_shift.STUDY,
    only_bn_trainable.STUDY,
    fine_tuning_bn.STUDY,
)

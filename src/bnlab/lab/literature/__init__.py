"""The BN literature's studies beyond the first three (``bnlab.lab.studies``): one module each,
with the study's ``Experiment`` (its arms, settings, ``--quick`` form and the paper's claims).

``STUDIES`` lists them in the order ``bnlab list`` shows them; ``bnlab.lab.experiments``
registers them beside the seed experiments and the first studies.
"""

from bnlab.lab.literature import depth_at_init, learning_rate_range, scale_invariance

STUDIES = (
    scale_invariance.STUDY,
    depth_at_init.STUDY,
    learning_rate_range.STUDY,
)

"""Report sections of the literature studies (``bnlab.lab.literature``), one module each, in the
form of ``bnlab.results.studies``: ``SECTIONS[name](arms, save, confidence) -> [blocks]``.
``bnlab.results.sections.for_experiment`` looks a study up here after those of ``studies``.
"""

from bnlab.results.literature import (dropout_variance_shift, fine_tuning_bn, only_bn_trainable,
                                      smoothness)

SECTIONS = {
    "dropout-variance-shift": dropout_variance_shift.section,
    "only-bn-trainable": only_bn_trainable.section,
    "fine-tuning-bn": fine_tuning_bn.section,
    "smoothness": smoothness.section,
}

"""Tools for trained models: PreciseBN (``precise``), folding BN away (``fold``), the BN check of
``bnlab check`` (``check``) and the activation probe (``probe``)."""

from bnlab.tools.fold import fold
from bnlab.tools.precise import precise_bn
from bnlab.tools.probe import ActivationProbe

__all__ = ["ActivationProbe", "fold", "precise_bn"]

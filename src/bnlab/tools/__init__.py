"""Tools for trained models: PreciseBN (``precise``), folding BN away (``fold``), the BN check of
``bnlab check`` (``check``) and the activation probe (``probe``)."""

from bnlab.tools.precise import precise_bn

__all__ = ["precise_bn"]

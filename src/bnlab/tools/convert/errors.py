"""The one error of the conversion: an op or layer outside the table, named with its place."""

from bnlab.errors import UserError


class UnsupportedOp(UserError):
    """An op (PyTorch) or layer (Keras) the conversion does not cover; the message names it and
    where it is in the graph."""

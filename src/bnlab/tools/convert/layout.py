"""Where the channels are: a PyTorch tensor of rank r ≥ 3 that a convolution reads is
channels-first, (N, C, *S) with S = (L), (H, W) or (D, H, W), and its Keras tensor is
channels-last, (N, *S, C) ("cf"); every other tensor is the same in both ("same").

A model input of rank 4 or 5 is an image or a volume (cf); one of rank 3 is cf only when the model
has a 1-D convolution or pooling (else it is a sequence of feature vectors, (N, T, F) in both).
"""

import numpy as np

CF, SAME = "cf", "same"


def input_layout(rank, one_d):
    """The layout of a model input of ``rank`` (batch axis included); ``one_d``: the model has a
    1-D convolution or pooling."""
    return CF if rank >= 4 or (rank == 3 and one_d) else SAME


def to_torch(x, layout):
    """(N, *S, C) -> (N, C, *S) for a cf array; others unchanged."""
    return np.moveaxis(x, -1, 1) if layout == CF else x


def to_keras(x, layout):
    return np.moveaxis(x, 1, -1) if layout == CF else x


def keras_axis(torch_axis, rank, layout):
    """The Keras axis of a PyTorch axis (both ≥ 0) of a rank-``rank`` tensor."""
    if layout != CF or torch_axis == 0:
        return torch_axis
    return rank - 1 if torch_axis == 1 else torch_axis - 1


def torch_axis(keras_axis_, rank, layout):
    if layout != CF or keras_axis_ == 0:
        return keras_axis_
    return 1 if keras_axis_ == rank - 1 else keras_axis_ + 1

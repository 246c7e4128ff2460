"""PyTorch ``.pt2`` (``torch.export.save``) ↔ Keras ``.keras``, BN's conventions converted.

``torch_to_keras`` reads an exported program's graph op by op; ``keras_to_torch`` builds a
``torch.nn.Module`` from a Keras graph and exports it; ``verify`` runs both on a random batch, in
inference and for one training step, and gives the largest differences. Torch is imported only
here (the ``torch`` extra). Layout (``layout``): a PyTorch tensor that convolutions read,
(N, C, *S), is the Keras tensor (N, *S, C); every other tensor is the same in both. Several
inputs and outputs are converted as they are.

==========================  ========================================================
PyTorch                     Keras
==========================  ========================================================
Linear                      Dense (kernel = weight.T), on (N, ..., features)
Conv1d/2d/3d                Conv1D/2D/3D (kernel = weight with (out, in) moved last);
                            padding p: ZeroPaddingND(p) + "valid"; "same" (stride 1) as
                            is; stride, dilation, groups as is. Keras's "same" with a
                            stride (asymmetric) -> F.pad + "valid" in PyTorch
BatchNorm1d/2d/3d           bnlab BatchNorm, unbiased_moving_variance=True;
                            momentum 1 − m; the same eps; affine=False: center/scale off;
                            track_running_stats=False: BatchStatisticsOnly (batch statistics
                            in inference too); momentum=None (an eval export writes 0):
                            BatchNorm(momentum=None), num_batches_tracked carried over;
                            BatchNorm1d over (N, C, L) without a convolution: axis=1
GroupNorm, LayerNorm        GroupNormalization, LayerNormalization (same eps; LayerNorm over
                            a convolution's (C, H, W), (H, W), W: those Keras axes)
ReLU, ReLU6, LeakyReLU,     ReLU, ReLU(max_value), LeakyReLU, ELU, Activation("sigmoid" |
ELU, sigmoid, tanh,         "tanh" | "softmax" | "gelu" | "silu" | "hard_silu" |
softmax, GELU, SiLU,        "hard_sigmoid" | "hard_tanh")
Hardswish, Hardsigmoid,
Hardtanh(-1, 1)
Max/AvgPool1d/2d/3d         Max/AveragePoolingND (no padding, floor mode)
AdaptiveAvgPoolNd(1),       GlobalAveragePoolingND (keepdims as PyTorch's)
mean over all of S
flatten (after a conv)      Permute((channels first)) + Flatten: PyTorch's (C, *S) order
Dropout                     Dropout
a + b, a − b, a · b         Add, Subtract, Multiply (broadcast, as in a squeeze-excite gate)
x + c, x − c, x · c, x / c  Rescaling(scale, offset)
cat                         Concatenate (the axis mapped)
==========================  ========================================================
"""

from bnlab.tools.convert.errors import UnsupportedOp

__all__ = ["UnsupportedOp"]

"""PyTorch ``.pt2`` (``torch.export.save``) ↔ Keras ``.keras``, BN's conventions converted.

``torch_to_keras`` reads an exported program's graph op by op; ``keras_to_torch`` builds a
``torch.nn.Module`` from a Keras graph and exports it; ``verify`` runs both on a random batch, in
inference and for one training step, and gives the largest differences. Torch is imported only
here (the ``torch`` extra). Layout: a rank-4 PyTorch tensor (N, C, H, W) is the Keras tensor
(N, H, W, C); every other rank is the same in both.

========================  ==========================================================
PyTorch                   Keras
========================  ==========================================================
Linear                    Dense (kernel = weight.T)
Conv2d                    Conv2D (kernel = weight.permute(2, 3, 1, 0)); padding p:
                          ZeroPadding2D(p) + "valid"; stride, dilation, groups as is
BatchNorm1d/2d            bnlab BatchNorm, unbiased_moving_variance=True;
                          momentum 1 − m; the same eps; affine=False: center/scale off;
                          track_running_stats=False: BatchStatisticsOnly (batch statistics
                          in inference too)
GroupNorm, LayerNorm      GroupNormalization, LayerNormalization (same eps)
ReLU, LeakyReLU, ELU,     ReLU, LeakyReLU, ELU, Activation("sigmoid" | "tanh" |
sigmoid, tanh, softmax    "softmax")
MaxPool2d, AvgPool2d      MaxPooling2D, AveragePooling2D (no padding, floor mode)
AdaptiveAvgPool2d(1)      GlobalAveragePooling2D(keepdims=True)
flatten (after a conv)    Permute((3, 1, 2)) + Flatten: PyTorch's (C, H, W) order
Dropout                   Dropout
a + b                     Add
========================  ==========================================================
"""

from bnlab.tools.convert.errors import UnsupportedOp

__all__ = ["UnsupportedOp"]

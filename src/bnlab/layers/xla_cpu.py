"""2-D convolution and max pooling in the forms XLA's CPU backend runs fastest (JAX only).

Same math as ``jax.lax.conv_general_dilated`` and ``jax.lax.reduce_window(max)``, the ops Keras's
``Conv2D`` and ``MaxPooling2D`` call on JAX; only how each derivative is computed changes.
Layouts: x (N, H, W, C_in) and the kernel (kh, kw, C_in, C_out), as Keras stores them.

Convolution, per output pixel p and kernel tap t = (i, j), with x_t the input shifted by t::

    y[p, :]  = Σ_t x_t[p, :] · K[t]                    forward       (N, H', W', C_out)
    dK[t]    = Σ_p x_t[p, :]ᵀ · dy[p, :]              kernel grad   (kh, kw, C_in, C_out)
    dx       = Σ_t shift_back_t(dy · K[t]ᵀ)           input grad    (N, H, W, C_in)

XLA's CPU backend runs the input gradient as a transposed convolution at 2-9x the time of the
forward pass for the small channel counts of the seed models. Here it is one matrix product,
``dy (N·H'·W', C_out) @ K (kh·kw·C_in, C_out)ᵀ``, whose kh·kw column blocks are added back at their
shifted places (the transpose of im2col). With a single input channel the forward pass is the sum
of the kh·kw shifted, scaled copies of the image, which XLA fuses into one loop. The kernel
gradient is XLA's own. (Measured in ``bench/``; see docs/performance.md.)

Max pooling with window = strides: the forward pass is a reshape and a max; the gradient goes to
the first maximum of each window in row-major order — the element XLA's select-and-scatter picks,
so ties are broken as with Keras — and is computed as an elementwise mask instead of a scatter.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _same_padding(size, k, stride):
    """TensorFlow's "same" padding along one axis: (before, after), output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return (total // 2, total - total // 2), out


def _geometry(x_shape, kernel_shape, strides, padding):
    """Padding ((top, bottom), (left, right)) and output size (H', W')."""
    (_, h, w, _), (kh, kw, _, _) = x_shape, kernel_shape
    if padding == "same":
        pad_h, h_out = _same_padding(h, kh, strides[0])
        pad_w, w_out = _same_padding(w, kw, strides[1])
        return (pad_h, pad_w), (h_out, w_out)
    return ((0, 0), (0, 0)), ((h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1)


def _xla_conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding.upper(),
                                    dimension_numbers=_DIMENSIONS)


def _shifted_sum_conv(x, kernel, strides, padding):
    """The forward pass as Σ_t x_t · K[t], for C_in = 1: one fused elementwise loop."""
    kh, kw = kernel.shape[:2]
    pads, (h_out, w_out) = _geometry(x.shape, kernel.shape, strides, padding)
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    sh, sw = strides
    y = 0.0
    for i in range(kh):
        for j in range(kw):
            x_t = x[:, i:i + sh * (h_out - 1) + 1:sh, j:j + sw * (w_out - 1) + 1:sw, :]
            y = y + x_t * kernel[i, j, 0]  # (N, H', W', 1) · (C_out,)
    return y


INPUT_GRADIENTS = ("sum", "scatter")


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, kernel, strides, padding, input_gradient="sum"):
    """``lax.conv_general_dilated`` in NHWC/HWIO with TF "valid"/"same" padding, fast on the CPU.

    x: (N, H, W, C_in); kernel: (kh, kw, C_in, C_out); strides: (sh, sw); padding: "valid" or
    "same". Returns (N, H', W', C_out). ``input_gradient`` picks how the kh·kw blocks of
    ``dy @ Kᵀ`` are added back into dx: ``"sum"``, one fused loop (XLA fuses it into the ops that
    read dx); ``"scatter"``, one in-place add per tap. Use ``"scatter"`` where dx feeds a max-pool
    gradient: XLA would fuse the sum into that gradient and recompute it for every position of
    the pooling window (LeNet's second conv is twice as fast with "scatter"; without pooling, as
    in the deep CNN, "sum" is the faster: bench/tried.md).
    """
    if kernel.shape[2] == 1:
        return _shifted_sum_conv(x, kernel, strides, padding)
    return _xla_conv(x, kernel, strides, padding)


def _conv2d_forward(x, kernel, strides, padding, input_gradient):
    return conv2d(x, kernel, strides, padding, input_gradient), (x, kernel)


def _conv2d_backward(strides, padding, input_gradient, residuals, dy):
    x, kernel = residuals
    _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, strides, padding), kernel)
    (d_kernel,) = kernel_vjp(dy)
    return _input_gradient(dy, kernel, x.shape, strides, padding, input_gradient), d_kernel


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


def _input_gradient(dy, kernel, x_shape, strides, padding, method):
    """dx = Σ_t shift_back_t(dy · K[t]ᵀ): one matrix product, then col2im."""
    n, h, w, c_in = x_shape
    kh, kw, _, c_out = kernel.shape
    (pad_h, pad_w), (h_out, w_out) = _geometry(x_shape, kernel.shape, strides, padding)
    sh, sw = strides
    d_cols = (dy.reshape(-1, c_out) @ kernel.reshape(-1, c_out).T).reshape(
        n, h_out, w_out, kh * kw, c_in)
    h_pad, w_pad = h + sum(pad_h), w + sum(pad_w)
    zero = jnp.zeros((), dy.dtype)
    dx = jnp.zeros((n, h_pad, w_pad, c_in), dy.dtype)
    for i in range(kh):
        for j in range(kw):
            # Tap (i, j) read x_pad[i + sh·p, j + sw·q], p < H', q < W': its gradient goes back there.
            d_tap = d_cols[:, :, :, i * kw + j, :]
            if method == "scatter":
                dx = dx.at[:, i:i + sh * (h_out - 1) + 1:sh, j:j + sw * (w_out - 1) + 1:sw].add(d_tap)
            else:
                high_h = h_pad - i - (sh * (h_out - 1) + 1)
                high_w = w_pad - j - (sw * (w_out - 1) + 1)
                dx = dx + lax.pad(d_tap, zero, ((0, 0, 0), (i, high_h, sh - 1),
                                                (j, high_w, sw - 1), (0, 0, 0)))
    return dx[:, pad_h[0]:pad_h[0] + h, pad_w[0]:pad_w[0] + w, :]


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x, pool_size):
    """Max pooling with window = strides = pool_size (ph, pw), "valid" padding; x (N, H, W, C).

    Rows and columns past the last whole window are dropped, as "valid" pooling drops them.
    """
    return jnp.max(_windows(x, pool_size), axis=(2, 4))


def _windows(x, pool_size):
    """x cropped to whole windows, as (N, H', ph, W', pw, C)."""
    n, h, w, c = x.shape
    ph, pw = pool_size
    h_out, w_out = h // ph, w // pw
    return x[:, :h_out * ph, :w_out * pw, :].reshape(n, h_out, ph, w_out, pw, c)


def _max_pool_forward(x, pool_size):
    y = max_pool(x, pool_size)
    return y, (x, y)


def _max_pool_backward(pool_size, residuals, dy):
    """dy goes to the first element of each window (row-major) that equals the window's max."""
    x, y = residuals
    windows = _windows(x, pool_size)
    ph, pw = pool_size
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for a in range(ph):
        row = []
        for b in range(pw):
            first = (windows[:, :, a, :, b, :] == y) & ~taken
            taken = taken | first
            row.append(jnp.where(first, dy, jnp.zeros((), dy.dtype)))
        rows.append(jnp.stack(row, axis=3))  # (N, H', W', pw, C)
    dx = jnp.stack(rows, axis=2)  # (N, H', ph, W', pw, C)
    n, h, w, c = x.shape
    dx = dx.reshape(n, y.shape[1] * ph, y.shape[2] * pw, c)
    return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)

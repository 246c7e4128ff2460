"""Porting BN weights to and from PyTorch (plain dicts of arrays; torch itself is never imported).

::

    keras.layers.BatchNormalization          torch.nn.BatchNorm1d/2d
      gamma, beta                              weight, bias
      moving_mean, moving_variance             running_mean, running_var
      momentum m (weight of the OLD value)     momentum 1 − m (weight of the NEW value)
      momentum=None (cumulative average)       momentum=None (cumulative average)
      epsilon (added to the variance)          eps (added to the variance): same value carries over

After porting, eval/inference outputs agree. Training-time running-variance updates agree only
with unbiased_moving_variance=True on the Keras/reference side: PyTorch stores the unbiased
variance N/(N−1)·σ² in running_var, Keras stores σ²; both normalise with the biased σ².
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["momentum_to_torch", "momentum_from_torch", "to_torch", "from_torch",
           "keras_weights", "weights_dict"]

_TO_TORCH = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var"}
_FROM_TORCH = {v: k for k, v in _TO_TORCH.items()}


def momentum_to_torch(keras_momentum: float) -> float:
    """Keras momentum m (weight of the old value) → PyTorch momentum 1 − m."""
    return 1.0 - _check_momentum(keras_momentum)


def momentum_from_torch(torch_momentum: float) -> float:
    """PyTorch momentum m (weight of the new value) → Keras momentum 1 − m."""
    return 1.0 - _check_momentum(torch_momentum)


def _check_momentum(m) -> float:
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {m}")
    return m


def _array(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, duck-typed: no torch import
        v = v.detach().cpu().numpy()
    return np.array(v, copy=True)


def _rename(d: dict, names: dict, ignore: tuple[str, ...], what: str) -> dict:
    unknown = sorted(set(d) - set(names) - set(ignore))
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; expected some of {sorted(names)}")
    return {names[k]: _array(v) for k, v in d.items() if k in names}


def to_torch(weights: dict) -> dict:
    """{gamma, beta, moving_mean, moving_variance} → {weight, bias, running_mean, running_var}.

    Missing gamma/beta (scale/center off) stay missing (``affine=False`` in PyTorch). Values come
    back as NumPy arrays; wrap them with ``torch.as_tensor`` before ``load_state_dict``. ε means
    the same in both frameworks (added to the variance), so it carries over unchanged; eval outputs
    agree after porting, training-time running_var updates only with unbiased_moving_variance=True.
    """
    return _rename(weights, _TO_TORCH, (), "Keras weight")


def from_torch(state: dict) -> dict:
    """{weight, bias, running_mean, running_var} → {gamma, beta, moving_mean, moving_variance}.

    Accepts NumPy arrays or (CPU) tensors; ``num_batches_tracked`` is ignored. ε carries over
    unchanged; see ``to_torch`` for what agrees after porting.
    """
    return _rename(state, _FROM_TORCH, ("num_batches_tracked",), "PyTorch state")


def _order(center: bool, scale: bool) -> list[str]:
    return (["gamma"] if scale else []) + (["beta"] if center else []) + [
        "moving_mean", "moving_variance"]


def keras_weights(d: dict, center: bool = True, scale: bool = True) -> list:
    """Keras ``set_weights`` order: [gamma, beta, moving_mean, moving_variance], gamma omitted when
    ``scale=False`` and beta when ``center=False``."""
    names = _order(center, scale)
    missing = [k for k in names if k not in d]
    if missing:
        raise ValueError(f"weights dict lacks {missing} (center={center}, scale={scale})")
    return [_array(d[k]) for k in names]


def weights_dict(weights: Sequence[Any], center: bool = True, scale: bool = True) -> dict:
    """Inverse of ``keras_weights``: a ``get_weights`` list → {gamma?, beta?, moving_*}."""
    names = _order(center, scale)
    if len(weights) != len(names):
        raise ValueError(f"expected {len(names)} weights {names} (center={center}, "
                         f"scale={scale}), got {len(weights)}")
    return {k: _array(w) for k, w in zip(names, weights)}

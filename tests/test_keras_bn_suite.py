"""Keras's own test file for its BN layer, run against bnlab's layer.

The file is read from the installed keras package (so it follows Keras upgrades); its module-level
name ``layers`` is replaced by a proxy whose ``BatchNormalization`` is ``bnlab.layers.BatchNorm``
and whose every other attribute is Keras's (``Masking``, ``Input``, ...). pytest then collects
and runs every test of Keras's ``BatchNormalizationTest`` against bnlab's layer, once with each
``gradient`` (autodiff, closed-form, and native on JAX).
"""

import importlib.util
from pathlib import Path

import pytest

import bnlab  # noqa: F401  (sets the default backend before Keras is imported)
import keras
from keras.src import layers as keras_layers
from backend_utils import BACKEND, ClosedFormBatchNorm, NativeBatchNorm
from bnlab.layers import BatchNorm

pytestmark = pytest.mark.backend

KERAS_TEST_FILE = (
    Path(keras.__file__).parent / "src" / "layers" / "normalization" / "batch_normalization_test.py"
)


class _LayersWithBnlabBatchNorm:
    """``keras.src.layers`` with bnlab's BatchNorm (``layer``) in place of Keras's
    BatchNormalization."""

    def __init__(self, layer):
        self.BatchNormalization = layer

    def __getattr__(self, name):
        return getattr(keras_layers, name)


def _load_keras_suite(layer=BatchNorm):
    spec = importlib.util.spec_from_file_location("keras_batch_normalization_test", KERAS_TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.layers = _LayersWithBnlabBatchNorm(layer)
    return module


def test_keras_suite_is_installed():
    assert KERAS_TEST_FILE.is_file(), f"keras no longer ships {KERAS_TEST_FILE}"


_suite = _load_keras_suite()


class TestKerasBatchNormalizationSuite(_suite.BatchNormalizationTest):
    """Every test of Keras's BatchNormalizationTest, with bnlab's layer."""

    def test_the_layer_under_test_is_bnlab(self):
        assert _suite.layers.BatchNormalization is BatchNorm


_closed_form_suite = _load_keras_suite(ClosedFormBatchNorm)


class TestKerasBatchNormalizationSuiteClosedForm(_closed_form_suite.BatchNormalizationTest):
    """The same tests with ``gradient="closed-form"``."""

    def test_the_layer_under_test_is_bnlab(self):
        assert _closed_form_suite.layers.BatchNormalization is ClosedFormBatchNorm


if BACKEND == "jax":
    _native_suite = _load_keras_suite(NativeBatchNorm)

    class TestKerasBatchNormalizationSuiteNative(_native_suite.BatchNormalizationTest):
        """The same tests with ``gradient="native"``: the C++ kernels where they apply."""

        def test_the_layer_under_test_is_bnlab(self):
            assert _native_suite.layers.BatchNormalization is NativeBatchNorm

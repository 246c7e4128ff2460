"""The activation probe: how the distribution of chosen layers' inputs moves during training.

Ioffe & Szegedy 2015, Figure 1(b, c): the {15, 50, 85}th percentiles of a layer's input over the
course of training. Every ``every`` training steps (and at step 0), the model runs in training mode
(batch statistics) on one fixed probe batch — the first ``PROBE_IMAGES`` training images — and the
percentiles of each chosen layer's input are taken over all its values (every example and unit).
The run changes no state of the model.

``layers`` chooses the layers: an int is an index into ``model.layers``, ``"bn"`` every BN layer,
any other string a layer name. Results are keyed ``"INDEX:CLASS"`` (stable across processes and
seeds, unlike Keras's generated names).

Both of bnlab's training paths record it: Keras ``fit`` through the callback
:class:`ActivationProbe`; the seeds-together program (``bnlab.lab.multiseed``) through
:class:`ProbeRecord` fed with its own vmapped captures. A trial's record goes into its results
(``results["probe"]``), which the report draws.
"""

import keras
import numpy as np

from bnlab.tools import precise

PERCENTILES = (15, 50, 85)
PROBE_IMAGES = 256


def check_spec(spec):
    """``{"layers": [...], "every": N}`` checked; ValueError naming the argument otherwise."""
    if not isinstance(spec, dict) or set(spec) - {"layers", "every"}:
        raise ValueError(f"probe must be a dict with keys 'layers' and 'every', not {spec!r}")
    every = spec.get("every", 50)
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"probe 'every' must be a positive integer, not {every!r}")
    layers = spec.get("layers", ["bn"])
    if not layers or not all(isinstance(x, (int, str)) for x in layers):
        raise ValueError(f"probe 'layers' must be a list of indices or names, not {layers!r}")
    return {"layers": list(layers), "every": every}


def resolve(model, layers):
    """[(key, layer)] for the ``layers`` choice (see the module docstring), in model order."""
    chosen = set()
    for choice in layers:
        if choice == "bn":
            chosen |= {i for i, layer in enumerate(model.layers) if precise.is_batch_norm(layer)}
        elif isinstance(choice, int):
            if not -len(model.layers) <= choice < len(model.layers):
                raise ValueError(f"probe layer index {choice} is out of range for "
                                 f"{len(model.layers)} layers")
            chosen.add(choice % len(model.layers))
        else:
            index = [i for i, layer in enumerate(model.layers) if layer.name == choice]
            if not index:
                raise ValueError(f"probe layer {choice!r} is not a layer of {model.name}")
            chosen.add(index[0])
    if not chosen:
        raise ValueError(f"probe layers {layers!r} choose no layer of {model.name}")
    return [(f"{i}:{model.layers[i].__class__.__name__}", model.layers[i]) for i in sorted(chosen)]


class ProbeRecord:
    """The percentiles of each probed layer's input, step after step."""

    def __init__(self, keys, every):
        self.keys, self.every = list(keys), every
        self.steps = []
        self.values = {key: [] for key in self.keys}

    def add(self, step, inputs):
        """``inputs``: one array per key, the layer's input on the probe batch."""
        self.steps.append(int(step))
        for key, x in zip(self.keys, inputs):
            self.values[key].append([float(v) for v in np.percentile(np.asarray(x), PERCENTILES)])

    def as_dict(self):
        return {"every": self.every, "percentiles": list(PERCENTILES), "steps": self.steps,
                "layers": self.values}


class ActivationProbe(keras.callbacks.Callback):
    """Keras callback: ``model.fit(..., callbacks=[ActivationProbe(["bn"], 50, x_probe)])``.

    Counts training steps over every ``fit`` it is given to (so a trial trained in several
    ``fit`` calls has one record); ``record.as_dict()`` is the result.
    """

    def __init__(self, layers, every, x):
        super().__init__()
        self.layers, self.every = layers, every
        self.x = np.asarray(x)[:PROBE_IMAGES]
        self.step, self.record, self._inputs = 0, None, None

    def on_train_begin(self, logs=None):
        if self.record is None:
            chosen = resolve(self.model, self.layers)
            self.record = ProbeRecord([key for key, _ in chosen], self.every)
            self._inputs = precise.input_model(self.model, [layer for _, layer in chosen])
            self._capture()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            if hasattr(self.model, "jax_state_sync"):  # JAX's fit keeps the state aside
                self.model.jax_state_sync()
            self._capture()

    def _capture(self):
        inputs = precise.layer_inputs(self.model, self._inputs, self.x, training=True)
        self.record.add(self.step, inputs)

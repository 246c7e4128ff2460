"""The activation probe: how the distribution of chosen layers' inputs moves during training.

Ioffe & Szegedy 2015, Figure 1(b, c): the {15, 50, 85}th percentiles of a layer's input over the
course of training. At step 0 and every ``every`` training steps, the model runs on one fixed
probe batch — the first ``images`` images of the ``split`` ("train" or "test") — in ``mode``
"training" (batch statistics) or "inference" (moving statistics), and for each chosen layer the
percentiles are taken over the values of its input x (N, ..., C) on that batch: over all of
them, or with ``unit`` = j over x[..., j] alone (unit j of a dense layer over the N images; channel
j of a conv layer over the images and positions). The run changes no state of the model.

The spec, a trial config's ``probe`` (defaults in :data:`DEFAULTS`)::

    {"layers": ["bn"], "every": 50, "unit": None, "mode": "training", "split": "train",
     "images": 256, "per_unit": False}

``per_unit``: also record each unit's (channel's) own percentiles at every step, in the record's
``units`` (key → steps × C × 3), so that a drift can be measured over all units, not one.

``layers`` chooses the layers: an int is an index into ``model.layers``; ``"bn"`` every BN layer
and ``"activation"`` every Activation layer; ``"bn:i"`` / ``"activation:i"`` the i-th of them
(0-based, negative from the end: ``"activation:-1"`` is the last); any other string a layer name.
Results are keyed ``"INDEX:CLASS"`` (stable across processes and seeds, unlike Keras's generated
names). The ``ioffe-fig1`` study probes unit 0 (and per unit, all) of the last sigmoid's input on
1000 test images in training mode, every 200 steps.

Both of bnlab's training paths record it with the same spec and the same record
(:meth:`ProbeRecord.as_dict`): Keras ``fit`` through the callback :class:`ActivationProbe`; the
seeds-together program (``bnlab.lab.multiseed``) through :class:`ProbeRecord` fed with its own
vmapped captures; in either mode the two agree to float round-off (tests/test_probe.py). A trial's
record goes into its results (``results["probe"]``), which the report
draws.
"""

import keras
import numpy as np

from bnlab.tools import precise

PERCENTILES = (15, 50, 85)
PROBE_IMAGES = 256
MODES = ("training", "inference")
SPLITS = ("train", "test")
KINDS = {"bn": precise.is_batch_norm,
         "activation": lambda layer: isinstance(layer, keras.layers.Activation)}
DEFAULTS = {"layers": ["bn"], "every": 50, "unit": None, "mode": "training", "split": "train",
            "images": PROBE_IMAGES, "per_unit": False}


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_spec(spec):
    """The spec with its defaults filled in; ValueError naming the key and what it allows."""
    if not isinstance(spec, dict) or set(spec) - set(DEFAULTS):
        raise ValueError(f"probe must be a dict with keys among {', '.join(DEFAULTS)}, "
                         f"not {spec!r}")
    spec = {**DEFAULTS, **spec}
    layers, unit = spec["layers"], spec["unit"]
    if (not isinstance(layers, (list, tuple)) or not layers
            or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in layers)):
        raise ValueError(f"probe 'layers' must be a non-empty list of layer indices, names, "
                         f"'bn', 'activation', 'bn:i' or 'activation:i', not {layers!r}")
    for choice in layers:
        kind, _, nth = str(choice).partition(":")
        if kind in KINDS and nth and not nth.lstrip("-").isdigit():
            raise ValueError(f"probe layer {choice!r}: after '{kind}:' an integer index")
    if not _positive_int(spec["every"]):
        raise ValueError(f"probe 'every' must be a positive integer, not {spec['every']!r}")
    if unit is not None and not (isinstance(unit, int) and not isinstance(unit, bool)
                                 and unit >= 0):
        raise ValueError(f"probe 'unit' must be None or a channel index >= 0, not {unit!r}")
    if spec["mode"] not in MODES:
        raise ValueError(f"probe 'mode' must be one of {', '.join(MODES)}, not {spec['mode']!r}")
    if spec["split"] not in SPLITS:
        raise ValueError(f"probe 'split' must be one of {', '.join(SPLITS)}, "
                         f"not {spec['split']!r}")
    if not _positive_int(spec["images"]):
        raise ValueError(f"probe 'images' must be a positive integer, not {spec['images']!r}")
    return {**spec, "layers": list(layers)}


def probe_images(spec, arrays):
    """The probe batch: the first ``images`` images of ``arrays[split]`` (``arrays``: split ->
    (x, y), as the training paths hold them)."""
    return np.asarray(arrays[spec["split"]][0][:spec["images"]])


def _nth(model, kind, nth, choice):
    of_kind = [i for i, layer in enumerate(model.layers) if KINDS[kind](layer)]
    if not nth:
        return of_kind
    if not -len(of_kind) <= int(nth) < len(of_kind):
        raise ValueError(f"probe layer {choice!r}: {model.name} has {len(of_kind)} {kind} layers")
    return [of_kind[int(nth)]]


def resolve(model, layers, unit=None):
    """[(key, layer)] for the ``layers`` choice (see the module docstring), in model order; with
    ``unit``, every chosen layer's input must have that channel."""
    chosen = set()
    for choice in layers:
        kind, _, nth = str(choice).partition(":")
        if isinstance(choice, str) and kind in KINDS:
            chosen |= set(_nth(model, kind, nth, choice))
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
    found = [(f"{i}:{model.layers[i].__class__.__name__}", model.layers[i]) for i in sorted(chosen)]
    for key, layer in found:
        if unit is not None and unit >= layer.input.shape[-1]:
            raise ValueError(f"probe 'unit' {unit} is out of range for layer {key}'s input of "
                             f"{layer.input.shape[-1]} channels")
    return found


class ProbeRecord:
    """The percentiles of each probed layer's input (or of one unit of it), step after step."""

    def __init__(self, keys, spec):
        self.keys, self.spec = list(keys), check_spec(spec)
        self.steps = []
        self.values = {key: [] for key in self.keys}
        self.units = {key: [] for key in self.keys} if self.spec["per_unit"] else None

    def add(self, step, inputs):
        """``inputs``: one array per key, the layer's input on the probe batch."""
        self.steps.append(int(step))
        for key, x in zip(self.keys, inputs):
            x = np.asarray(x)
            if self.units is not None:  # each channel over the images (and positions)
                per_unit = np.percentile(x.reshape(-1, x.shape[-1]), PERCENTILES, axis=0)
                self.units[key].append(np.round(per_unit.T, 5).tolist())
            if self.spec["unit"] is not None:
                x = x[..., self.spec["unit"]]
            self.values[key].append([float(v) for v in np.percentile(x, PERCENTILES)])

    def due(self, step):
        return step % self.spec["every"] == 0

    def as_dict(self):
        described = {k: self.spec[k] for k in ("every", "unit", "mode", "split", "images")}
        record = {**described, "percentiles": list(PERCENTILES), "steps": self.steps,
                  "layers": self.values}
        if self.units is not None:
            record["units"] = self.units
        return record


class ActivationProbe(keras.callbacks.Callback):
    """Keras callback: ``model.fit(..., callbacks=[ActivationProbe(["bn"], 50, x_train)])``.

    ``x``: the images of the split (the first ``images`` are the probe batch); the other keywords
    are the spec's. Counts training steps over every ``fit`` it is given to (so a trial trained in
    several ``fit`` calls has one record); ``record.as_dict()`` is the result.
    """

    def __init__(self, layers, every, x, **spec):
        super().__init__()
        self.spec = check_spec({"layers": layers, "every": every, **spec})
        self.x = np.asarray(x)[:self.spec["images"]]
        self.step, self.record, self._inputs = 0, None, None

    @classmethod
    def from_spec(cls, spec, arrays):
        """The probe of a trial config's ``probe`` on its data (split -> (x, y))."""
        spec = check_spec(spec)
        return cls(x=probe_images(spec, arrays), **spec)

    def on_train_begin(self, logs=None):
        if self.record is None:
            chosen = resolve(self.model, self.spec["layers"], self.spec["unit"])
            self.record = ProbeRecord([key for key, _ in chosen], self.spec)
            self._inputs = precise.input_model(self.model, [layer for _, layer in chosen])
            self._capture()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.record.due(self.step):
            if hasattr(self.model, "jax_state_sync"):  # JAX's fit keeps the state aside
                self.model.jax_state_sync()
            self._capture()

    def _capture(self):
        inputs = precise.layer_inputs(self.model, self._inputs, self.x,
                                      training=self.spec["mode"] == "training")
        self.record.add(self.step, inputs)

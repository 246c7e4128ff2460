"""The measured findings of ``bnlab check`` beyond staleness: each function looks at the model (and
data), and returns findings ``{"kind", "layer", "detail", "advice"}``: one line of evidence, one
line of advice. ``label(layer)`` names a layer for the user (a converted PyTorch model's module).

- **batch-dependent inference** (keras#12400, pytorch#5406): the same examples computed in two
  different batches by ``model(x)`` (no ``training`` given: Keras lets an explicit
  ``training=False`` override a call's baked ``training=True``, so ``predict`` hides it) give
  different outputs beyond ``BATCH_TOLERANCE`` (relative):
  some BN layer normalizes with batch statistics at inference (``training=True`` baked into its
  call, a layer forced to training). The culprits are the BN layers whose own output changes
  while their input does not.
- **bad statistics** (pytorch#88474): NaN or Inf in the moving statistics, or a variance ≤ 0.
- **dropout before BN** (Li et al. 2019, "Understanding the disharmony between dropout and batch
  normalization by variance shift"): for a BN layer with a Dropout upstream (before any earlier BN
  layer), the variance of its inputs in inference against the training-mode (population)
  variance that its moving variance estimates: ``shift = median_c |σ²_inference / σ²_training − 1|``
  above ``VARIANCE_SHIFT``.
- **shared BN**: one BN layer called on several inputs keeps one pair of statistics for all.
- **constant inputs**: a channel whose training-mode inputs are at one value for at least
  ``CONSTANT`` of them (padding, background, dead units). A value that holds over half of a
  channel's entries is its median, so the fraction equal to the median finds it.
- **batch of 1**: in training mode a BN layer reducing over the batch alone sees one value per
  channel: x − μ_B = 0 and its output is β whatever the input.
- **virtual batch**: Ghost BN's ``virtual_batch_size`` must divide every training batch.
"""

import contextlib
import math

import keras
import numpy as np

from bnlab.tools import precise

BATCH_TOLERANCE = 1e-4  # relative output change between batches above which inference is batch-dependent
VARIANCE_SHIFT = 0.1  # median relative inference/training variance difference reported for dropout
CONSTANT = 0.9  # fraction of a channel's inputs at one value above which it is "dominated"


def finding(kind, layer, detail, advice):
    return {"kind": kind, "layer": layer, "detail": detail, "advice": advice}


@contextlib.contextmanager
def dropout_off(model):
    """The model's Dropout layers (and subclasses) at rate 0 inside the block."""
    layers = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in layers]
    try:
        for layer in layers:
            layer.rate = 0.0
        yield
    finally:
        for layer, rate in zip(layers, rates):
            layer.rate = rate


def _all_layers(model):
    return [sub for layer in model.layers
            for sub in ([layer] + (_all_layers(layer) if isinstance(layer, keras.Model) else []))]


def graph_nodes(model):
    """The nodes (calls of layers) of the model's graph, nested models' included: a layer's
    ``_inbound_nodes`` also hold the calls Keras made while building it."""
    graph = getattr(model, "_functional", None) or model
    nodes = [node for depth in getattr(graph, "_nodes_by_depth", {}).values() for node in depth]
    return nodes + [n for node in nodes if isinstance(node.operation, keras.Model)
                    for n in graph_nodes(node.operation)]


def calls(layer, nodes):
    """The layer's calls among ``nodes``."""
    return [node for node in nodes if node.operation is layer]


def shared(layer, nodes):
    return len(calls(layer, nodes)) > 1


def baked_training(layer, nodes):
    """The ``training=`` fixed in the layer's calls in the graph (True/False), else None."""
    for node in calls(layer, nodes):
        value = node.arguments.kwargs.get("training")
        if value is not None:
            return bool(value)
    return None


def _outputs(model, tensors, x, training):
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, tensors)
    return precise.layer_inputs(model, probe, x, training=training)


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))


def batch_dependence(model, layers, x, label):
    """Inference outputs of ``n`` examples alone vs the same ones after ``n`` others."""
    n = min(16, len(x) // 2)
    if n < 1:
        return []
    nodes = graph_nodes(model)
    own = [layer for layer in layers if not shared(layer, nodes)]
    tensors = [model.outputs[0]] + [t for layer in own for t in (layer.input, layer.output)]
    # training=None, as model(x) calls it: an explicit training=False overrides a baked True
    alone = _outputs(model, tensors, x[:n], training=None)
    mixed = [o[n:] for o in _outputs(model, tensors, np.concatenate([x[n:2 * n], x[:n]]),
                                     training=None)]
    change = _relative(alone[0], mixed[0])
    if change <= BATCH_TOLERANCE:
        return []
    culprits = [label(layer) for i, layer in enumerate(own)
                if _relative(alone[2 + 2 * i], mixed[2 + 2 * i]) > BATCH_TOLERANCE
                and _relative(alone[1 + 2 * i], mixed[1 + 2 * i]) <= BATCH_TOLERANCE]
    forced = [label(layer) for layer in own if baked_training(layer, nodes)]
    return [finding(
        "batch-dependent inference", ", ".join(culprits) or None,
        f"in inference (model(x)) the outputs of {n} examples change by {change:.2g} (relative) "
        f"when computed with {n} others: BN uses batch statistics at inference"
        + (f" (training=True in the call of {', '.join(forced)}; predict's training=False "
           "overrides it)" if forced else ""),
        "call BN without training=True (it then follows the model's mode); in PyTorch call "
        "model.eval() before inference or export")]


def bad_statistics(layer, label, after_precise=None):
    mean, variance = precise.moving_statistics(layer)
    problems = [f"{what} has {count} of {len(values)} channels {kind}"
                for what, values in (("moving_mean", mean), ("moving_variance", variance))
                for kind, count in (("NaN", np.isnan(values).sum()),
                                    ("Inf", np.isinf(values).sum()))
                if count]
    low = int(np.sum(variance <= 0))
    if low:
        problems.append(f"moving_variance has {low} of {len(variance)} channels ≤ 0")
    if not problems:
        return []
    measured = f" (inference accuracy then {after_precise:.4f}, measured)" \
        if after_precise is not None else ""
    return [finding("bad statistics", label(layer), "; ".join(problems),
                    f"recompute them with bnlab.tools.precise_bn(model, x_train){measured}; under "
                    "mixed precision keep BN's statistics in float32 (pytorch#88474)")]


def dropout_upstream(layer, nodes):
    """The Dropout layers on the paths into ``layer``, up to the previous BN layers or inputs."""
    found, seen = [], set()
    stack = [t for node in calls(layer, nodes) for t in node.input_tensors]
    while stack:
        history = getattr(stack.pop(), "_keras_history", None)
        if not history or id(history[0]) in seen:
            continue
        source = history[0]
        seen.add(id(source))
        if isinstance(source, keras.layers.Dropout):
            found.append(source)
        if precise.is_batch_norm(source) or isinstance(source, keras.layers.InputLayer):
            continue
        node = source._inbound_nodes[history[1]]
        stack.extend(node.input_tensors)
    return found


def variance_shifts(model, population, x, batch_size):
    """{layer: (shift, σ²_inference / σ²_training per channel, μ_inference, σ²_inference)} for
    BN layers with a Dropout upstream; inference-mode inputs over ``x``."""
    nodes = graph_nodes(model)
    layers = [layer for layer, _, _ in population if dropout_upstream(layer, nodes)]
    if not layers:
        return {}
    probe = precise.input_model(model, layers)
    values = [[] for _ in layers]
    for start in range(0, len(x), batch_size):
        for i, v in enumerate(precise.layer_inputs(model, probe, x[start:start + batch_size],
                                                   training=False)):
            values[i].append(v)
    out = {}
    variances = {id(layer): variance for layer, _, variance in population}
    for layer, parts in zip(layers, values):
        mean, variance, _ = precise.batch_moments(layer, np.concatenate(parts))
        ratio = variance / np.maximum(variances[id(layer)], 1e-12)
        out[layer] = (float(np.median(np.abs(ratio - 1))), ratio, mean, variance)
    return out


def dropout_finding(layer, nodes, shift, ratio, label, accuracy):
    before, after = accuracy
    measured = (f": inference accuracy {before:.4f} -> {after:.4f} ({after - before:+.4f}, "
                "measured)") if before is not None else " (no labels: accuracy not measured)"
    names = ", ".join(d.name for d in dropout_upstream(layer, nodes))
    return finding(
        "dropout before BN", label(layer),
        f"{names} upstream: its inputs' variance in inference is {np.median(ratio):.3g}x the "
        f"training-mode variance its moving variance estimates (median shift {shift:.2g} > "
        f"{VARIANCE_SHIFT}; Li et al. 2019)",
        "move the dropout after the last BN layer, or recompute the moving statistics with "
        f"dropout off{measured}")


def shared_finding(layer, nodes, label):
    if not shared(layer, nodes):
        return []
    sources = [t._keras_history[0].name for node in calls(layer, nodes)
               for t in node.input_tensors if getattr(t, "_keras_history", None)]
    return [finding("shared BN", label(layer),
                    f"called on {len(sources)} inputs (from {', '.join(sources)}): "
                    "one pair of moving statistics, averaged over all of them (the statistics "
                    "and their staleness above are of the first input)",
                    "give each input its own BN layer, unless the inputs share one distribution")]


def constant_inputs(model, layers, x, batch_size, label):
    """Channels whose training-mode inputs sit at one value ``CONSTANT`` of the time or more."""
    nodes = graph_nodes(model)
    own = [layer for layer in layers if not shared(layer, nodes)]
    if not own or len(x) < batch_size:
        return []
    probe = precise.input_model(model, own)
    values = [[] for _ in own]
    for start in range(0, len(x) - batch_size + 1, batch_size):
        for i, v in enumerate(precise.layer_inputs(model, probe, x[start:start + batch_size],
                                                   training=True)):
            values[i].append(v)
    found = []
    for layer, parts in zip(own, values):
        v = np.concatenate(parts)
        axis = precise.channel_axis(layer, v.ndim)
        v = np.moveaxis(v, axis, -1).reshape(-1, v.shape[axis])
        median = np.median(v, axis=0)
        fraction = np.mean(v == median, axis=0)
        dominated = np.flatnonzero(fraction >= CONSTANT)
        if len(dominated):
            worst = dominated[np.argmax(fraction[dominated])]
            found.append(finding(
                "constant inputs", label(layer),
                f"{len(dominated)} of {v.shape[1]} channels have ≥{CONSTANT:.0%} of their "
                f"inputs at one value (channel {worst}: {fraction[worst]:.0%} at "
                f"{median[worst]:.3g})",
                "its statistics describe that value (padding, background, dead units), not the "
                "signal: crop or mask the padding, or normalize per example (GroupNorm, "
                "LayerNorm)"))
    return found


def training_batch(layers, batch_size):
    """The batch size the training-mode passes can use: at least 2, a multiple of every
    ``virtual_batch_size``."""
    ks = [k for k in (getattr(layer, "virtual_batch_size", None) for layer in layers) if k]
    step = math.lcm(*ks) if ks else 1
    return max(step * (max(batch_size, 2) // step), step, 2)


def batch_size_findings(model, layers, x, batch_size, used, label):
    found = []
    fixed = model.inputs[0].shape[0]
    if batch_size == 1 or fixed == 1:
        nodes = graph_nodes(model)
        single = [layer for layer in layers
                  if len(layer.input.shape) == 2 and not shared(layer, nodes)]
        if single:
            out = _outputs(model, [layer.output for layer in single], x[:1], training=True)
            worst = max(float(np.max(np.abs(o - _beta(layer))))
                        for layer, o in zip(single, out))
            why = "the model's input has batch size 1" if fixed == 1 else "--batch-size 1"
            found.append(finding(
                "batch of 1", ", ".join(label(layer) for layer in single),
                f"{why}: in training mode each channel has one value, x - μ_B = 0, and the "
                f"output is β for any input (measured |y - β| ≤ {worst:.2g}); the statistics "
                f"here use batches of {used}",
                "train with batches of 2 or more (drop_remainder, or fit's batch_size), or use "
                "GroupNorm/LayerNorm, which normalize each example on its own"))
    last = len(x) % batch_size
    for layer in layers:
        k = getattr(layer, "virtual_batch_size", None)
        bad = [b for b in dict.fromkeys((batch_size, last)) if k and b and b % k]
        if bad:
            found.append(finding(
                "virtual batch", label(layer),
                f"virtual_batch_size={k} does not divide batch size(s) "
                f"{', '.join(map(str, bad))} (--batch-size, and the last batch of {len(x)} "
                f"examples): training mode fails there; the check used batches of {used}",
                f"train with batch sizes that are multiples of {k}, dropping the remainder "
                "(steps_per_epoch = N // batch_size)"))
    return found


def _beta(layer):
    beta = getattr(layer, "beta", None)
    return 0.0 if beta is None else keras.ops.convert_to_numpy(beta)

"""``bnlab check``: what is wrong with a trained model's BN, in a table read in ten seconds.

Findings, each with one line of what to do:

- **stale** moving statistics (keras#7177: few updates at momentum 0.99): per BN layer, the moving
  statistics against the population statistics of its training-mode inputs over the data
  (``bnlab.tools.precise``, "pooled"), as ``precise.staleness`` measures them: the mean's shift in
  population standard deviations and the variance's relative error, stale above ``THRESHOLD``
  (0.1, either). The advice gives the accuracy that ``precise_bn`` would bring, measured here
  (the model is left as it was).
- **train/inference gap** (keras#6014): loss and accuracy of the same images in training mode (batch
  statistics, batches of ``batch_size``) and in inference mode; a gap above ``GAP`` (2 accuracy
  points) is reported.
- **frozen** BN layers (``trainable=False``: they run in inference mode, also in ``fit``);
- **dropout right before BN** (the variance BN sees in training is not the one of inference;
  Li et al. 2019, "Understanding the disharmony between dropout and BN");
- **port mistakes**: ``epsilon`` 1e-5 (PyTorch's default; Keras's is 1e-3) and ``momentum`` below
  0.5 (PyTorch's convention, where 0.1 means Keras's 0.9).

The model is unchanged by the check. Bad input raises bnlab.errors.UserError with one line of explanation.
"""

import keras
import numpy as np

from bnlab.errors import UserError
from bnlab.tools import precise

THRESHOLD = 0.1  # staleness (mean shift in σ, relative variance error) above which stats are stale
GAP = 0.02  # training-mode vs inference-mode accuracy difference reported as a finding


def fit_data(model, x):
    """``x`` shaped for the model's input: a channel axis of 1 added when the model wants one."""
    want = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) + (1,) == want:
        x = x[..., None]
    if tuple(x.shape[1:]) != want:
        raise UserError(f"data of shape {tuple(x.shape[1:])} does not fit the model's input "
                         f"shape {want}")
    return x.astype("float32")


def _loss_function(model):
    """The model's compiled loss and whether it takes one-hot labels; (None, False) if it has none."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return None, False
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    name = getattr(loss, "name", "") or getattr(loss, "__name__", "")
    return loss, "sparse" not in name.lower()


def _scores(outputs, y, loss, one_hot):
    outputs = np.asarray(outputs)
    accuracy = float(np.mean(np.argmax(outputs, axis=-1) == y))
    if loss is None:
        return None, accuracy
    labels = np.eye(outputs.shape[-1], dtype="float32")[y] if one_hot else y
    return float(np.mean(keras.ops.convert_to_numpy(loss(labels, outputs)))), accuracy


def evaluate(model, x, y, *, training, batch_size):
    """(loss, accuracy) over x in batches; ``training=True`` uses batch statistics, and the
    state the run changes (moving statistics, random generators) is restored."""
    loss, one_hot = _loss_function(model)
    outputs = []
    for start in range(0, len(x) - (batch_size - 1 if training else 0), batch_size):
        batch = x[start:start + batch_size]
        if training:
            saved = [v.numpy() for v in model.non_trainable_variables]
            out = model(batch, training=True)
            for variable, value in zip(model.non_trainable_variables, saved):
                variable.assign(value)
        else:
            out = model(batch, training=False)
        outputs.append(keras.ops.convert_to_numpy(out))
    outputs = np.concatenate(outputs)
    return _scores(outputs, y[:len(outputs)], loss, one_hot)


def _previous_layer(layer):
    history = getattr(layer.input, "_keras_history", None)
    return history[0] if history else None


def check(model, x_train, x_test, y_test, *, batch_size=32):
    """Diagnose the model's BN layers on data; returns {"layers": [...], "modes": {...},
    "findings": [{"kind", "layer", "detail", "advice"}]}.

    ``x_train``: images whose training-mode statistics are the population (full batches of
    ``batch_size``); ``x_test``, ``y_test``: images and integer labels scored in both modes.
    """
    layers = precise.bn_layers(model)
    if not layers:
        raise UserError("the model has no BatchNormalization or bnlab BatchNorm layer")
    x_train, x_test = fit_data(model, x_train), fit_data(model, x_test)
    population = precise.collect(model, x_train, batch_size=batch_size, progress=False)
    rows, findings = [], []
    for layer, mean, variance in population:
        stale = precise.staleness(layer, mean, variance)
        row = {"layer": layer.name, "kind": layer.__class__.__name__, **stale,
               "stale": max(stale.values()) > THRESHOLD, "trainable": layer.trainable,
               "momentum": layer.momentum, "epsilon": layer.epsilon}
        rows.append(row)
        findings += _layer_findings(layer, row)
    inference = evaluate(model, x_test, y_test, training=False, batch_size=500)
    training = evaluate(model, x_test, y_test, training=True, batch_size=batch_size)
    modes = {"training": {"loss": training[0], "accuracy": training[1]},
             "inference": {"loss": inference[0], "accuracy": inference[1]}}
    if abs(training[1] - inference[1]) > GAP:
        findings.append({
            "kind": "train/inference gap", "layer": None,
            "detail": f"accuracy {training[1]:.4f} in training mode vs {inference[1]:.4f} in "
                      "inference mode on the same images",
            "advice": "the moving statistics do not describe the data the model sees: see the "
                      "stale layers; evaluate always in inference mode"})
    stale_layers = [row["layer"] for row in rows if row["stale"]]
    if stale_layers:
        modes["after_precise_bn"] = _after_precise_bn(model, population, x_test, y_test)
        after = modes["after_precise_bn"]["accuracy"]
        findings.append({
            "kind": "stale", "layer": ", ".join(stale_layers),
            "detail": f"{len(stale_layers)} of {len(rows)} BN layers' moving statistics differ "
                      f"from the population's by more than {THRESHOLD}",
            "advice": f"run bnlab.tools.precise_bn(model, x_train, batch_size={batch_size}): "
                      f"inference accuracy {inference[1]:.4f} -> {after:.4f} "
                      f"({after - inference[1]:+.4f}, measured)"})
    return {"layers": rows, "modes": modes, "findings": findings, "threshold": THRESHOLD,
            "images": {"population": len(x_train), "scored": len(x_test)}}


def _after_precise_bn(model, population, x, y):
    """Inference loss and accuracy with the population statistics; the old ones put back."""
    saved = [precise.moving_statistics(layer) for layer, _, _ in population]
    renorm = [layer.moving_stddev.numpy() if getattr(layer, "renorm", False) else None
              for layer, _, _ in population]
    try:
        for layer, mean, variance in population:
            precise.assign_statistics(layer, mean, variance)
        loss, accuracy = evaluate(model, x, y, training=False, batch_size=500)
    finally:
        for (layer, _, _), (mean, variance), stddev in zip(population, saved, renorm):
            precise.assign_statistics(layer, mean, variance)
            if stddev is not None:
                layer.moving_stddev.assign(stddev)
    return {"loss": loss, "accuracy": accuracy}


def _layer_findings(layer, row):
    found = []
    if not layer.trainable:
        found.append({"kind": "frozen", "layer": layer.name,
                      "detail": "trainable=False: runs in inference mode, also during fit",
                      "advice": "intended for fine-tuning; set trainable=True to train it"})
    previous = _previous_layer(layer)
    if isinstance(previous, keras.layers.Dropout):
        found.append({"kind": "dropout before BN", "layer": layer.name,
                      "detail": f"{previous.name} feeds it: its variance in training differs "
                                "from inference (variance shift)",
                      "advice": "move the dropout after the last BN layer, or run precise_bn"})
    if layer.epsilon < 1e-4:
        found.append({"kind": "epsilon", "layer": layer.name,
                      "detail": f"epsilon={layer.epsilon:g}, PyTorch's default (Keras's is 1e-3)",
                      "advice": "fine if ported from PyTorch on purpose; else use 1e-3"})
    if layer.momentum is not None and layer.momentum < 0.5:
        found.append({"kind": "momentum", "layer": layer.name,
                      "detail": f"momentum={layer.momentum:g} keeps only {layer.momentum:.0%} of "
                                "the old statistics each step (PyTorch's convention?)",
                      "advice": f"Keras's momentum is 1 - PyTorch's: use "
                                f"{1 - layer.momentum:g}"})
    return found


def format_table(result):
    """The check as text: one row per BN layer, the two modes, then the findings with advice."""
    lines = [f"{'BN layer':<24} {'kind':<20} {'mean shift':>10} {'var error':>10}  "
             f"{'momentum':>8} {'epsilon':>8}  flags"]
    for row in result["layers"]:
        flags = ", ".join(f for f, on in (("STALE", row["stale"]),
                                          ("frozen", not row["trainable"])) if on)
        momentum = "None" if row["momentum"] is None else f"{row['momentum']:g}"
        lines.append(f"{row['layer']:<24} {row['kind']:<20} {row['mean_shift']:>10.3f} "
                     f"{row['variance_error']:>10.3f}  {momentum:>8} {row['epsilon']:>8g}  "
                     f"{flags}")
    lines.append(f"(stale: mean shift in population σ or relative variance error above "
                 f"{result['threshold']}; population of {result['images']['population']} "
                 f"training images)")
    lines.append("")
    for mode, scores in result["modes"].items():
        loss = "—" if scores["loss"] is None else f"{scores['loss']:.4f}"
        lines.append(f"{mode.replace('_', ' '):<17} loss {loss:>8}  accuracy "
                     f"{scores['accuracy']:.4f}  ({result['images']['scored']} test images)")
    lines.append("")
    if not result["findings"]:
        lines.append("no findings")
    for f in result["findings"]:
        where = f" [{f['layer']}]" if f["layer"] else ""
        lines.append(f"- {f['kind']}{where}: {f['detail']}")
        lines.append(f"  -> {f['advice']}")
    return "\n".join(lines)

"""``bnlab check``: what is wrong with a trained model's BN, in a table read in ten seconds.

Findings, each with one line of what to do:

- **stale** moving statistics (keras#7177: few updates at momentum 0.99): per BN layer, the moving
  statistics against the population statistics of its training-mode inputs over the data
  (``bnlab.tools.precise``, "pooled"), as ``precise.staleness`` measures them: the mean's shift in
  population standard deviations and the variance's relative error, stale above ``THRESHOLD``
  (0.1, either). The advice gives the accuracy that ``precise_bn`` would bring, measured here
  (the model is left as it was).
- **train/inference gap** (keras#6014): loss and accuracy of the same images in training mode (batch
  statistics, batches of ``batch_size``, dropout off) and in inference mode; a gap above ``GAP``
  (2 accuracy points) is reported.
- **frozen** BN layers (``trainable=False``: they run in inference mode, also in ``fit``);
- **port mistakes**: ``epsilon`` 1e-5 (PyTorch's default; Keras's is 1e-3) and ``momentum`` below
  0.5 (PyTorch's convention, where 0.1 means Keras's 0.9);
- and the measured findings of ``bnlab.tools.findings``: inference that depends on the batch,
  NaN/Inf or non-positive moving statistics, dropout before BN (variance shift, with the accuracy
  after recomputing the statistics with dropout off), one BN layer shared by several inputs,
  channels dominated by one value (padding), a training batch of 1 and virtual batches that do
  not divide the batch.

Without labels (``y_test=None``) the accuracies are not measured; the train/inference gap is then
how often the two modes predict the same class.

The model is unchanged by the check. Bad input raises bnlab.errors.UserError with one line of explanation.
"""

import keras
import numpy as np

from bnlab.errors import UserError
from bnlab.tools import findings, forward, precise

THRESHOLD = 0.1  # staleness (mean shift in σ, relative variance error) above which stats are stale
GAP = 0.02  # training-mode vs inference-mode accuracy difference reported as a finding
CONSTANT_SAMPLE = 512  # training examples whose layer inputs are looked at value by value


def fit_data(model, x):
    """``x`` shaped for the model's input: a channel axis of 1 added when the model wants one."""
    want = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) + (1,) == want:
        x = x[..., None]
    if tuple(x.shape[1:]) != want:
        raise UserError(f"data of shape {tuple(x.shape[1:])} does not fit the model's input "
                         f"shape {want}")
    return x.astype("float32")


def require_one_input_output(model):
    """The check feeds one array and scores one output: other models get one line."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"the model has {len(model.inputs)} input(s) and {len(model.outputs)} "
                        "output(s); bnlab check diagnoses models of one input and one output "
                        "(--data gives one array): check a one-input, one-output part, e.g. "
                        "keras.Model(model.inputs[0], model.outputs[0])")


def _loss_function(model):
    """The model's compiled loss and whether it takes one-hot labels; (None, False) if it has none."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return None, False
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    name = getattr(loss, "name", "") or getattr(loss, "__name__", "")
    return loss, "sparse" not in name.lower()


def _scores(outputs, y, loss, one_hot):
    if y is None:
        return None, None
    outputs = np.asarray(outputs)
    accuracy = float(np.mean(np.argmax(outputs, axis=-1) == y))
    if loss is None:
        return None, accuracy
    labels = np.eye(outputs.shape[-1], dtype="float32")[y] if one_hot else y
    return float(np.mean(keras.ops.convert_to_numpy(loss(labels, outputs)))), accuracy


def predict(model, x, *, training, batch_size):
    """The model's outputs over x in batches (full ones in training mode); ``training=True``
    uses batch statistics, and the state the run changes (moving statistics, random generators)
    is restored."""
    outputs = []
    for start in range(0, len(x) - (batch_size - 1 if training else 0), batch_size):
        # state restored also in inference: a call baked to training=True updates it
        out = forward.outputs(model, x[start:start + batch_size], training=training)
        outputs.append(keras.ops.convert_to_numpy(out))
    return np.concatenate(outputs)


def evaluate(model, x, y, *, training, batch_size):
    """(loss, accuracy) over x in batches, (None, None) without labels ``y``."""
    loss, one_hot = _loss_function(model)
    outputs = predict(model, x, training=training, batch_size=batch_size)
    return _scores(outputs, None if y is None else y[:len(outputs)], loss, one_hot)


def check(model, x_train, x_test, y_test=None, *, batch_size=32, names=None, pytorch=False):
    """Diagnose the model's BN layers on data; returns {"layers": [...], "modes": {...},
    "findings": [{"kind", "layer", "detail", "advice"}]}.

    ``x_train``: inputs whose training-mode statistics are the population (full batches of
    ``batch_size``); ``x_test``, ``y_test``: inputs and integer labels scored in both modes
    (``y_test=None``: no labels, no accuracy; the modes' predictions are compared instead).
    ``names``: {Keras layer name: the name to show} (a converted PyTorch model's modules);
    ``pytorch=True``: the model is PyTorch's, whose ε and momentum conventions are no mistake.
    """
    names = names or {}

    def label(layer):
        return names.get(layer.name, layer.name)

    layers = precise.bn_layers(model)
    if not layers:
        raise UserError("the model has no BatchNormalization or bnlab BatchNorm layer")
    x_train, x_test = fit_data(model, x_train), fit_data(model, x_test)
    used = findings.training_batch(layers, batch_size)
    for part, x in (("training", x_train), ("test", x_test)):
        if len(x) < used:
            raise UserError(f"{len(x)} {part} inputs make no full batch of {used} for training "
                             "mode; give more, or a smaller --batch-size")
    population = precise.collect(model, x_train, batch_size=used, progress=False)
    rows, found = [], []
    for layer, mean, variance in population:
        stale = precise.staleness(layer, mean, variance)
        row = {"layer": label(layer), "kind": layer.__class__.__name__, **stale,
               "stale": not all(np.isfinite(v) and v <= THRESHOLD for v in stale.values()),
               "trainable": layer.trainable, "momentum": layer.momentum,
               "epsilon": layer.epsilon}
        rows.append(row)
        found += _layer_findings(layer, label, pytorch)
    found += findings.batch_dependence(model, layers, x_test, label)
    inference = evaluate(model, x_test, y_test, training=False, batch_size=500)
    with findings.dropout_off(model):  # the gap is BN's: dropout would lower training mode alone
        training = evaluate(model, x_test, y_test, training=True, batch_size=used)
        found += _gap(model, x_test, y_test, used, training, inference)
    modes = {"training": {"loss": training[0], "accuracy": training[1]},
             "inference": {"loss": inference[0], "accuracy": inference[1]}}
    stale_layers = [(layer, row["layer"]) for (layer, _, _), row in zip(population, rows)
                    if row["stale"]]
    after = None
    if stale_layers:
        modes["after_precise_bn"] = _with_statistics(model, population, x_test, y_test)
        after = modes["after_precise_bn"]["accuracy"]
        measured = (f": inference accuracy {inference[1]:.4f} -> {after:.4f} "
                    f"({after - inference[1]:+.4f}, measured)") if after is not None else \
            " (no labels: accuracy not measured)"
        found.append({
            "kind": "stale", "layer": ", ".join(name for _, name in stale_layers),
            "detail": f"{len(stale_layers)} of {len(rows)} BN layers' moving statistics differ "
                      f"from the population's by more than {THRESHOLD}",
            "advice": f"run bnlab.tools.precise_bn(model, x_train, batch_size={used})"
                      f"{measured}"})
    for layer in layers:
        found += findings.bad_statistics(layer, label, after)
    found += _dropout(model, population, x_train, x_test, y_test, inference, label)
    nodes = findings.graph_nodes(model)
    found += [f for layer in layers for f in findings.shared_finding(layer, nodes, label)]
    found += findings.constant_inputs(model, layers, x_train[:CONSTANT_SAMPLE], used, label)
    found += findings.batch_size_findings(model, layers, x_train, batch_size, used, label)
    return {"layers": rows, "modes": modes, "findings": found, "threshold": THRESHOLD,
            "images": {"population": len(x_train), "scored": len(x_test)}, "batch_size": used}


def _gap(model, x, y, batch_size, training, inference):
    if y is not None:
        if abs(training[1] - inference[1]) <= GAP:
            return []
        detail = (f"accuracy {training[1]:.4f} in training mode vs {inference[1]:.4f} in "
                  "inference mode on the same inputs")
    else:
        same = float(np.mean(
            np.argmax(predict(model, x, training=True, batch_size=batch_size), -1)
            == np.argmax(predict(model, x, training=False, batch_size=500), -1)[
                :len(x) // batch_size * batch_size]))
        if same >= 1 - GAP:
            return []
        detail = (f"the predicted class is the same in training and inference mode for only "
                  f"{same:.1%} of the inputs")
    return [{"kind": "train/inference gap", "layer": None, "detail": detail,
             "advice": "the moving statistics do not describe the data the model sees: see the "
                       "stale layers; evaluate always in inference mode"}]


def _dropout(model, population, x_train, x_test, y_test, inference, label):
    """The variance-shift findings, with the accuracy after recomputing the statistics of the
    shifted layers in inference mode (dropout off), one after the other."""
    shifts = findings.variance_shifts(model, population, x_train[:CONSTANT_SAMPLE], 500)
    shifted = [(layer, s) for layer, s in shifts.items() if s[0] > findings.VARIANCE_SHIFT]
    if not shifted:
        return []
    saved = {layer: precise.moving_statistics(layer) for layer, _ in shifted}
    try:
        for layer, _ in shifted:  # in order: each layer's inputs follow the earlier ones' update
            _, _, mean, variance = findings.variance_shifts(
                model, [(layer, None, shifts[layer][3])], x_train[:CONSTANT_SAMPLE], 500)[layer]
            precise.assign_statistics(layer, mean, variance)
        after = evaluate(model, x_test, y_test, training=False, batch_size=500)[1]
    finally:
        for layer, (mean, variance) in saved.items():
            precise.assign_statistics(layer, mean, variance)
    nodes = findings.graph_nodes(model)
    return [findings.dropout_finding(layer, nodes, s[0], s[1], label, (inference[1], after))
            for layer, s in shifted]


def _with_statistics(model, population, x, y):
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


def _layer_findings(layer, label, pytorch):
    found = []
    name = label(layer)
    if not layer.trainable:
        found.append({"kind": "frozen", "layer": name,
                      "detail": "trainable=False: runs in inference mode, also during fit",
                      "advice": "intended for fine-tuning; set trainable=True to train it"})
    if pytorch:
        return found
    if layer.epsilon < 1e-4:
        found.append({"kind": "epsilon", "layer": name,
                      "detail": f"epsilon={layer.epsilon:g}, PyTorch's default (Keras's is 1e-3)",
                      "advice": "fine if ported from PyTorch on purpose; else use 1e-3"})
    if layer.momentum is not None and layer.momentum < 0.5:
        found.append({"kind": "momentum", "layer": name,
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
                 f"training inputs, batches of {result['batch_size']})")
    lines.append("")
    for mode, scores in result["modes"].items():
        loss = "—" if scores["loss"] is None else f"{scores['loss']:.4f}"
        accuracy = "— (no labels)" if scores["accuracy"] is None else f"{scores['accuracy']:.4f}"
        lines.append(f"{mode.replace('_', ' '):<17} loss {loss:>8}  accuracy {accuracy}  "
                     f"({result['images']['scored']} test inputs)")
    lines.append("")
    if not result["findings"]:
        lines.append("no findings")
    for f in result["findings"]:
        where = f" [{f['layer']}]" if f["layer"] else ""
        lines.append(f"- {f['kind']}{where}: {f['detail']}")
        lines.append(f"  -> {f['advice']}")
    return "\n".join(lines)

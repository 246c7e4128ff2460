"""Both sides of a conversion on one random batch: inference outputs, and one training step's
outputs and updated running statistics, as the largest relative differences

    diff = max |keras − torch| / max |torch|       (per compared array, then the largest)

Dropout is off on both sides for the training step (the two frameworks draw different masks).
PyTorch runs its exported graph itself (``torch.fx.Interpreter`` over the program's ATen ops) with
each BN and dropout op's ``training`` flag set to the mode asked, except BN ops that the
conversion found baked (``torch_ops.baked``); a BN op of ``momentum=None``
(``torch_ops.cumulative``) gets PyTorch's factor 1/num_batches_tracked, counted as PyTorch
counts; the running statistics are copies, the program is unchanged.
"""

import numpy as np
import torch

from bnlab.tools import forward
from bnlab.tools.convert import layout, torch_ops, torch_to_keras

TOLERANCE = 1e-5


class _Run(torch.fx.Interpreter):
    def __init__(self, program, training, counts):
        super().__init__(program.graph_module)
        self.training, self.mode = training, torch_to_keras.export_mode(program.graph)
        self.counts = counts

    def run_node(self, node):
        if node.op == "call_function" and node.target in torch_ops.BN_OPS and \
                torch_ops.baked(node, self.mode) is None:
            args = list(node.args)
            args[5] = self.training
            if self.training and node.name in self.counts:  # momentum=None, as PyTorch runs it
                self.counts[node.name].add_(1)
                args[6] = 1.0 / float(self.counts[node.name])
            node = _Patched(node, args)
        elif node.op == "call_function" and node.target in torch_ops.DROPOUT_OPS:
            node = _Patched(node, [node.args[0], node.args[1], False])
        return super().run_node(node)


class _Patched:
    """A node seen by the interpreter with other arguments."""

    def __init__(self, node, args):
        self._node, self.args = node, tuple(args)

    def __getattr__(self, name):
        return getattr(self._node, name)


def run_torch(program, xs, training):
    """([outputs], {buffer name: value after the run}) of the exported program on the inputs
    ``xs``."""
    state = {k: v.detach().clone() for k, v in {**program.state_dict,
                                                **program.constants}.items()}
    signature = program.graph_signature
    targets = {spec.arg.name: spec.target for spec in signature.input_specs
               if spec.target is not None}
    mode = torch_to_keras.export_mode(program.graph)
    counts = {node.name: state[targets[node.args[3].name].rsplit(".", 1)[0]
                               + ".num_batches_tracked"]
              for node in program.graph.nodes
              if node.target in torch_ops.BN_OPS and torch_ops.cumulative(node, mode)}
    users = iter(xs)
    args = [state[spec.target] if spec.target is not None else torch.from_numpy(next(users))
            for spec in signature.input_specs]
    with torch.no_grad():
        out = _Run(program, training, counts).run(*args)
    out = list(out) if isinstance(out, (tuple, list)) else [out]
    user = [spec.kind == torch.export.graph_signature.OutputKind.USER_OUTPUT
            for spec in signature.output_specs]
    out = [o for o, keep in zip(out, user) if keep]
    return [o.detach().numpy() for o in out], {k: v.numpy() for k, v in state.items()}


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _largest(got, want, layouts):
    return max(relative(layout.to_torch(g, where), w) for g, w, where in zip(got, want, layouts))


def _as_list(out):
    import keras

    out = out if isinstance(out, (list, tuple)) else [out]
    return [keras.ops.convert_to_numpy(o) for o in out]


def compare(model, program, bn_buffers, info, *, batch=8, seed=0):
    """{"inference", "training", "running_mean", "running_var"}: the largest relative difference
    of each (over all outputs), and "biased": the BN layers whose Keras moving variance is biased
    (Keras's own convention), compared after the factor n/(n−1) PyTorch applies. ``info``: the
    conversion's layouts of the inputs and outputs."""
    from bnlab.tools.findings import dropout_off

    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(batch, *t.shape[1:])).astype("float32") for t in model.inputs]
    xts = [np.ascontiguousarray(layout.to_torch(x, where)) for x, where in zip(xs, info["inputs"])]
    feed = xs[0] if len(xs) == 1 else xs
    want, _ = run_torch(program, xts, training=False)
    got = _as_list(forward.outputs(model, feed, training=False))
    result = {"inference": _largest(got, want, info["outputs"])}

    want, buffers = run_torch(program, xts, training=True)
    saved = [v.numpy() for v in model.non_trainable_variables]
    old = {layer.name: keras_value(layer.moving_variance) for layer, _ in bn_buffers}
    with dropout_off(model):
        got = _as_list(model(feed, training=True))
    result["training"] = _largest(got, want, info["outputs"])
    means, variances, biased = [], [], []
    for layer, prefix in bn_buffers:
        mean, variance = keras_value(layer.moving_mean), keras_value(layer.moving_variance)
        if not getattr(layer, "unbiased_moving_variance", False) and layer.trainable:
            n = batch * _spatial(layer)
            m = layer.momentum
            if m is None:  # the cumulative average's momentum at this step
                m = 1.0 - 1.0 / float(keras_value(layer.num_batches_tracked))
            variance = m * old[layer.name] + (variance - m * old[layer.name]) * n / (n - 1)
            biased.append(layer.name)
        means.append(relative(mean, buffers[prefix + ".running_mean"]))
        variances.append(relative(variance, buffers[prefix + ".running_var"]))
    for variable, value in zip(model.non_trainable_variables, saved):
        variable.assign(value)
    result["running_mean"] = max(means, default=0.0)
    result["running_var"] = max(variances, default=0.0)
    result["biased"] = biased
    return result


def keras_value(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)


def _spatial(layer):
    """Values per channel and example that the layer reduces over (the spatial size)."""
    shape = layer.input.shape
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    return int(np.prod([d for i, d in enumerate(shape[1:], 1) if i != axis % len(shape)]))
def summary(result):
    """The differences as one line each, and whether all are within ``TOLERANCE``."""
    lines = [f"largest relative difference on a random batch: inference {result['inference']:.2g}, "
             f"training step {result['training']:.2g}, updated running mean "
             f"{result['running_mean']:.2g}, running variance {result['running_var']:.2g}"]
    if result["biased"]:
        lines.append(f"(Keras BN layers {', '.join(result['biased'])} store the biased variance, "
                     "PyTorch the unbiased one: compared after PyTorch's factor n/(n-1))")
    ok = all(result[k] <= TOLERANCE for k in ("inference", "training", "running_mean",
                                               "running_var"))
    return lines, ok

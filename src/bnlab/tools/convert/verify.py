"""Both sides of a conversion on one random batch: inference outputs, and one training step's
outputs and updated running statistics, as the largest relative differences

    diff = max |keras − torch| / max |torch|       (per compared array, then the largest)

Dropout is off on both sides for the training step (the two frameworks draw different masks).
PyTorch runs its exported graph itself (``torch.fx.Interpreter`` over the program's ATen ops) with
each BN and dropout op's ``training`` flag set to the mode asked, except BN ops that the
conversion found baked (``torch_to_keras.baked``); the running statistics are copies, the
program is unchanged.
"""

import numpy as np
import torch

from bnlab.tools.convert import torch_to_keras

TOLERANCE = 1e-5


class _Run(torch.fx.Interpreter):
    def __init__(self, program, training):
        super().__init__(program.graph_module)
        self.training, self.mode = training, torch_to_keras.export_mode(program.graph)

    def run_node(self, node):
        if node.op == "call_function" and node.target in torch_to_keras.BN_OPS and \
                torch_to_keras.baked(node, self.mode) is None:
            args = list(node.args)
            args[5] = self.training
            node = _Patched(node, args)
        elif node.op == "call_function" and node.target in torch_to_keras.DROPOUT_OPS:
            node = _Patched(node, [node.args[0], node.args[1], False])
        return super().run_node(node)


class _Patched:
    """A node seen by the interpreter with other arguments."""

    def __init__(self, node, args):
        self._node, self.args = node, tuple(args)

    def __getattr__(self, name):
        return getattr(self._node, name)


def run_torch(program, x, training):
    """(output, {buffer name: value after the run}) of the exported program on ``x``."""
    state = {k: v.detach().clone() for k, v in {**program.state_dict,
                                                **program.constants}.items()}
    args = []
    for spec in program.graph_signature.input_specs:
        args.append(state[spec.target] if spec.target is not None else torch.from_numpy(x))
    with torch.no_grad():
        out = _Run(program, training).run(*args)
    out = out[0] if isinstance(out, (tuple, list)) else out
    return out.detach().numpy(), {k: v.numpy() for k, v in state.items()}


def to_torch_layout(x):
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def to_keras_layout(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def compare(model, program, bn_buffers, *, batch=8, seed=0):
    """{"inference", "training", "running_mean", "running_var"}: the largest relative difference
    of each, and "biased": the BN layers whose Keras moving variance is biased (Keras's own
    convention), compared after the factor n/(n−1) PyTorch applies."""
    import keras

    from bnlab.tools.findings import dropout_off

    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")
    xt = np.ascontiguousarray(to_torch_layout(x))
    want, _ = run_torch(program, xt, training=False)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    result = {"inference": relative(to_torch_layout(got), want)}

    want, buffers = run_torch(program, xt, training=True)
    saved = [v.numpy() for v in model.non_trainable_variables]
    old = {layer.name: keras.ops.convert_to_numpy(layer.moving_variance) for layer, _ in bn_buffers}
    with dropout_off(model):
        got = keras.ops.convert_to_numpy(model(x, training=True))
    result["training"] = relative(to_torch_layout(got), want)
    means, variances, biased = [], [], []
    for layer, prefix in bn_buffers:
        mean = keras.ops.convert_to_numpy(layer.moving_mean)
        variance = keras.ops.convert_to_numpy(layer.moving_variance)
        if not getattr(layer, "unbiased_moving_variance", False) and layer.trainable:
            n = batch * _spatial(model, layer)
            m = layer.momentum
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


def _spatial(model, layer):
    """Values per channel and example that the layer reduces over (H·W for images, else 1)."""
    return int(np.prod(layer.input.shape[1:-1])) if len(layer.input.shape) > 2 else 1


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

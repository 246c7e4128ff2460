"""A Keras model as a ``torch.nn.Module`` and its exported program (``torch.export``), layer by
layer: the inverse of ``torch_to_keras`` (the table in ``bnlab.tools.convert``).

The module takes PyTorch's layout, (N, C, *S) for what convolutions read (``layout``); its
submodules are named after the Keras layers (dots and slashes as underscores); the layers
themselves are ``keras_ops``. BN: Keras momentum m is PyTorch's 1 − m, ε the
same; ``trainable=False`` becomes a module in eval mode inside the training export, and
``BatchStatisticsOnly`` (or a call with ``training=True``) ``track_running_stats=False``. The
program is exported in training mode (every BN and dropout op carries ``training=True``; bnlab
flips them for inference, as ``verify`` does), or in eval mode when a BN layer has
``momentum=None``.
"""

import keras
import torch
from torch import nn

from bnlab.tools import findings
from bnlab.tools.convert import keras_ops, layout
from bnlab.tools.convert.errors import UnsupportedOp
from bnlab.tools.convert.keras_ops import module_key
from bnlab.tools.precise import is_batch_norm



def to_torch(model):
    """(module, [(Keras BN layer, module path)], info); info as ``torch_to_keras.to_keras``'s.
    Raises ``UnsupportedOp``."""
    graph = _Graph(model)
    return graph.module, graph.bn_buffers, graph.info


def export(model, batch=4):
    """(program, pairs, info): the Keras model as a ``torch.export`` program (batch size
    dynamic, ≥ 2), in training mode; in eval mode when a BN layer has ``momentum=None``
    (PyTorch's cumulative average, which ``torch.export`` cannot trace in training mode)."""
    module, pairs, info = to_torch(model)
    examples, dims = [], []
    for t, where in zip(model.inputs, info["inputs"]):
        shape = tuple(t.shape[1:])
        if where == layout.CF:
            shape = (shape[-1], *shape[:-1])
        examples.append(torch.zeros((batch, *shape)))
        dims.append({0: torch.export.Dim("batch", min=2)})
    counting = [name for name, m in module.layers.items()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None
                and m.track_running_stats]
    if counting:
        frozen = [name for name, m in module.layers.items() if not m.training]
        if frozen:
            raise UnsupportedOp(f"layers {', '.join(counting)} have momentum=None and layers "
                                f"{', '.join(frozen)} trainable=False: a momentum=None BN is "
                                "exported in eval mode, where a frozen layer is no longer "
                                "told apart; give the momentum=None layers a momentum")
        module.eval()
        info["notes"].append(f"exported in eval mode: {', '.join(counting)} have momentum=None "
                             "(cumulative average; torch.export cannot trace it in training "
                             "mode); the graph writes its factor as 0")
    program = torch.export.export(module, tuple(examples), dynamic_shapes=(tuple(dims),))
    return program, pairs, info



class Converted(nn.Module):
    """Runs the Keras graph's steps in order: each ``(output, function, inputs)``."""

    def __init__(self, steps, inputs, outputs):
        super().__init__()
        self.layers = nn.ModuleDict()
        self.steps, self.inputs, self.outputs = steps, inputs, outputs

    def forward(self, *xs):
        env = dict(zip(self.inputs, xs))
        for out, function, inputs in self.steps:
            env[out] = function(self, *[env[i] for i in inputs])
        if len(self.outputs) == 1:
            return env[self.outputs[0]]
        return tuple(env[o] for o in self.outputs)


class _Graph:
    def __init__(self, model):
        self.model = model
        self.nodes = findings.graph_nodes(model)
        self.steps, self.bn_buffers, self.done, self.layout, self.frozen = [], [], {}, {}, []
        names = [f"input{i}" for i in range(len(model.inputs))]
        self.module = Converted(self.steps, names, [])
        one_d = any(isinstance(node.operation, keras_ops.ONE_D) for node in self.nodes)
        for name, t in zip(names, model.inputs):
            self.done[id(t)] = name
            self.layout[name] = layout.input_layout(len(t.shape), one_d)
        self.module.outputs = [self.tensor(t) for t in model.outputs]
        self.info = {"inputs": [self.layout[n] for n in names],
                     "outputs": [self.layout[n] for n in self.module.outputs], "notes": []}
        for layer in self.module.layers.values():
            layer.train()
        for name in self.frozen:
            self.module.layers[name].eval()

    def tensor(self, t):
        """The step that computes Keras tensor ``t`` (converting what it depends on first)."""
        if id(t) in self.done:
            return self.done[id(t)]
        layer, node_index, _ = t._keras_history
        node = layer._inbound_nodes[node_index]
        if isinstance(layer, keras.Model):
            raise UnsupportedOp(f"nested model {layer.name}: flatten it into one model first")
        inputs = [self.tensor(i) for i in node.input_tensors]
        name = f"t{len(self.steps)}"
        function, where = self.convert(layer, node, inputs)
        self.steps.append((name, function, inputs))
        self.layout[name] = where
        self.done[id(t)] = name
        return name

    def register(self, layer, module):
        key = module_key(layer)
        if key not in self.module.layers:
            self.module.layers[key] = module
        return key

    def convert(self, layer, node, inputs):
        where = f"layer {layer.name} ({layer.__class__.__name__})"
        layouts = {self.layout[i] for i in inputs}
        if len(layouts) > 1:
            raise UnsupportedOp(f"unsupported {where}: it combines channels-first and other "
                                "tensors")
        lay = layouts.pop() if layouts else layout.SAME
        rank = len(node.input_tensors[0].shape) if node.input_tensors else 0
        handler = keras_ops.batch_norm if is_batch_norm(layer) else next(
            (h for cls, h in keras_ops.HANDLERS.items() if isinstance(layer, cls)), None)
        if handler is None:
            nearest = keras_ops.NEAREST.get(type(layer).__name__, "")
            raise UnsupportedOp(f"unsupported {where}; {nearest}supported: see "
                                "bnlab.tools.convert")
        return handler(self, layer, node, rank, lay, where)

"""A PyTorch exported program (``torch.export``) as a Keras model, op by op.

Each ATen op of the graph becomes a Keras layer (the table in ``bnlab.tools.convert``); a module
called twice (the same weights) becomes one Keras layer called twice. Layer names are the PyTorch
modules' paths (``layer1.0.bn1``), so that the Keras model's findings name what the user wrote.

Training flags: ``torch.export`` writes each BN and dropout op's ``training`` into the graph. The
flag most of them carry is the mode the program was exported in, and becomes Keras's mode (the
``training`` of the call); a BN op with the other flag was a module left in its own mode: in
training mode in an eval export (or without running statistics) it becomes
``BatchStatisticsOnly``, in eval mode in a training export a ``trainable=False`` BN layer.
"""

import torch

from bnlab.errors import UserError
from bnlab.tools.convert import layout
from bnlab.tools.convert.errors import UnsupportedOp
from bnlab.tools.convert.torch_ops import (BN_OPS, DROPOUT_OPS, HANDLERS, NEAREST, ONE_D,
                                           module_path)

ATEN = torch.ops.aten


def load_program(path):
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # any failure to read it means: not a file torch.export wrote
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{path} is not a PyTorch exported program (.pt2 from "
                         f"torch.export.save) ({reason})") from None


def load_pt2(path):
    """(Keras model, {Keras layer name: PyTorch module}, info) from a ``torch.export.save``
    file (info: ``to_keras``'s)."""
    model, names, _, info = to_keras(load_program(path))
    return model, names, info




def export_mode(graph):
    """True if most BN/dropout ops carry training=True (the program was exported in train mode)."""
    flags = [bool(n.args[5]) for n in graph.nodes if n.target in BN_OPS and n.args[3] is not None]
    flags += [bool(n.args[2]) for n in graph.nodes if n.target in DROPOUT_OPS]
    return sum(flags) * 2 >= len(flags) if flags else True






def to_keras(program):
    """(Keras model, {layer name: module path}, [(BN layer, running-stat buffer prefix)], info)
    of an exported program; info: {"inputs", "outputs": their layouts, "notes": lines to print}.
    Raises ``UnsupportedOp`` for an op outside the table."""
    import keras

    graph = program.graph
    state = {**program.state_dict, **program.constants}
    targets = {spec.arg.name: spec.target for spec in program.graph_signature.input_specs
               if spec.target is not None}
    one_d = any(n.target in ONE_D for n in graph.nodes)
    converter = _Converter(keras, state, targets, export_mode(graph), one_d)
    for node in graph.nodes:
        if node.op == "placeholder":
            converter.placeholder(node)
        elif node.op == "call_function":
            converter.call(node)
        elif node.op == "output":
            user = [spec.kind == torch.export.graph_signature.OutputKind.USER_OUTPUT
                    for spec in program.graph_signature.output_specs]
            outputs = [a for a, keep in zip(node.args[0], user) if keep]
    results = [converter.tensor(node, a) for a in outputs]
    inputs = converter.inputs
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                        results[0][0] if len(results) == 1 else [r[0] for r in results],
                        name="converted")
    for layer, weights in converter.weights:
        layer.set_weights(weights)
    info = {"inputs": converter.input_layouts, "outputs": [r[1] for r in results],
            "notes": converter.notes}
    return model, converter.names, converter.bn_buffers, info


class _Converter:
    def __init__(self, keras, state, targets, mode, one_d):
        self.keras, self.L, self.state, self.targets, self.mode, self.one_d = \
            keras, keras.layers, state, targets, mode, one_d
        self.env = {}  # node name -> (Keras tensor, layout.CF | layout.SAME)
        self.layers = {}  # weight targets -> layer (a module called twice: one layer)
        self.names, self.weights, self.bn_buffers, self.used = {}, [], [], set()
        self.inputs, self.input_layouts, self.notes = [], [], []

    # -- helpers -----------------------------------------------------------------------------

    def value(self, arg):
        """A weight or buffer as a NumPy array (None stays None)."""
        if arg is None:
            return None
        return self.state[self.targets[arg.name]].detach().cpu().numpy()

    def tensor(self, node, arg):
        if not hasattr(arg, "name") or arg.name not in self.env:
            raise UnsupportedOp(f"op {node.target} at node {node.name} (module "
                                f"{module_path(node) or 'the model'}) takes {arg!r}, not a "
                                "tensor the conversion computes")
        return self.env[arg.name]

    def name(self, node, key=None):
        path = module_path(node)
        name = path if key is not None and path else node.name
        if name in self.used:
            name = f"{name}.{node.name}"
        self.used.add(name)
        self.names[name] = path or node.name
        return name

    def layer(self, node, make, key=None):
        """One layer per set of weights (``key``): a module called twice shares it."""
        if key is not None and key in self.layers:
            return self.layers[key], False
        layer = make(self.name(node, key))
        if key is not None:
            self.layers[key] = layer
        return layer, True

    def unsupported(self, node, why=""):
        hint = NEAREST.get(node.target, "supported: see bnlab.tools.convert")
        return UnsupportedOp(f"unsupported op {node.target} at node {node.name} (module "
                             f"{module_path(node) or 'the model'}){': ' + why if why else ''}; "
                             f"{hint}")

    def spatial(self, node, arg, dims=None):
        """(Keras tensor, number of spatial axes) of a channels-first tensor."""
        x, where = self.tensor(node, arg)
        if where != layout.CF or len(x.shape) < 3 or dims is not None and len(x.shape) != dims + 2:
            want = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}.get(
                dims, "a channels-first (N, C, ...)")
            raise self.unsupported(node, f"it wants a {want} tensor")
        return x, len(x.shape) - 2

    # -- graph nodes ---------------------------------------------------------------------------

    def placeholder(self, node):
        if node.name in self.targets:
            return
        shape = tuple(int(s) for s in node.meta["val"].shape[1:])
        where = layout.input_layout(len(shape) + 1, self.one_d)
        if where == layout.CF:
            shape = (*shape[1:], shape[0])
        x = self.keras.Input(shape, name=node.name if self.inputs else "input")
        self.inputs.append(x)
        self.input_layouts.append(where)
        self.env[node.name] = (x, where)

    def call(self, node):
        target = node.target
        if target == ATEN.add_.Tensor and node.args[0].name in self.targets:
            return  # num_batches_tracked += 1: bnlab counts only with momentum=None
        handler = HANDLERS.get(target)
        if handler is None:
            raise self.unsupported(node)
        self.env[node.name] = handler(self, node)

    def elementwise(self, node, layer_factory):
        x, where = self.tensor(node, node.args[0])
        return layer_factory(name=self.name(node))(x), where

"""bnlab.tools.convert beyond the four test models: PyTorch's momentum=None, 1-D and 3-D
convolutions with their BN, LayerNorm over a convolution's last axes, Keras's asymmetric "same"
padding, more ATen ops, several inputs and outputs; each held against PyTorch within 1e-5, and
what is refused said in one line through the command line."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
from torch import nn  # noqa: E402

from bnlab.cli import main  # noqa: E402
from bnlab.tools.convert import (keras_to_torch, layout, torch_ops, torch_to_keras,  # noqa: E402
                                 verify)

KEYS = ("inference", "training", "running_mean", "running_var")


def trained(module, *shapes):
    """The module after a few training steps (non-trivial running statistics)."""
    torch.manual_seed(0)
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(*[torch.randn(8, *s) * 2 + 1 for s in shapes])
    return module


def both_ways(program, label):
    """The program to Keras and back, each side compared; the largest difference of each."""
    model, names, pairs, info = torch_to_keras.to_keras(program)
    there = verify.compare(model, program, pairs, info)
    back, back_pairs, back_info = keras_to_torch.export(model)
    again = verify.compare(model, back, back_pairs, back_info)
    for result in (there, again):
        assert max(result[k] for k in KEYS) <= 1e-5, (there, again)
    print(label, {k: f"{there[k]:.2g}" for k in KEYS}, {k: f"{again[k]:.2g}" for k in KEYS})
    return model, names, pairs, info


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=None)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.bn1 = nn.BatchNorm1d(3, momentum=None, affine=False)

    def forward(self, x):
        return self.bn1(self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1)))


def test_momentum_none_is_the_cumulative_average_as_in_pytorch(tmp_path, capsys):
    """Through the command line both ways (convert verifies within 1e-5 or writes nothing),
    and the Keras model against the PyTorch module's own training step."""
    module = trained(Cumulative(), (2, 4, 4))
    torch.export.save(torch.export.export(module.eval(), (torch.randn(4, 2, 4, 4),)),
                      str(tmp_path / "c.pt2"))
    assert main(["convert", str(tmp_path / "c.pt2"), str(tmp_path / "c.keras")]) == 0
    out = capsys.readouterr().out
    assert "momentum=None (cumulative average)" in out
    print(out)
    model = keras.saving.load_model(tmp_path / "c.keras")
    bn = [layer for layer in model.layers if layer.name in ("bn", "bn1")]
    assert [(layer.momentum, int(layer.num_batches_tracked.numpy())) for layer in bn] == \
        [(None, 3), (None, 3)]

    x = np.random.default_rng(1).normal(size=(8, 2, 4, 4)).astype("float32")
    with torch.no_grad():
        want = module.train()(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(model(layout.to_keras(x, "cf"), training=True))
    assert verify.relative(got, want) <= 1e-5
    for layer, torch_bn in zip(bn, (module.bn, module.bn1)):
        assert verify.relative(layer.moving_variance.numpy(), torch_bn.running_var.numpy()) <= 1e-5
        assert verify.relative(layer.moving_mean.numpy(), torch_bn.running_mean.numpy()) <= 1e-5
        assert int(layer.num_batches_tracked.numpy()) == int(torch_bn.num_batches_tracked) == 4

    assert main(["convert", str(tmp_path / "c.keras"), str(tmp_path / "back.pt2")]) == 0
    out = capsys.readouterr().out
    assert "exported in eval mode" in out
    print(out)
    back = torch.export.load(str(tmp_path / "back.pt2"))
    ops = [n for n in back.graph.nodes if n.target == torch.ops.aten.batch_norm.default]
    assert [torch_ops.cumulative(n, torch_to_keras.export_mode(back.graph))
            for n in ops] == [True, True]


class Signal(nn.Module):
    """Conv1d, BatchNorm1d over (N, C, L), 1-D pooling, and a channel BN after a Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm1d(6)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(6, 4, 2, stride=2, groups=2)
        self.fc = nn.Linear(4 * 2, 5)

    def forward(self, x):
        y = self.conv2(self.pool(torch.relu(self.bn(self.conv(x)))))
        return self.fc(torch.flatten(nn.functional.avg_pool1d(y, 1), 1))


class Volume(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.pool = nn.MaxPool3d(2)
        self.conv2 = nn.Conv3d(4, 4, 1)
        self.bn2 = nn.BatchNorm3d(4, affine=False)

    def forward(self, x):
        y = self.bn2(self.conv2(self.pool(torch.relu(self.bn(self.conv(x))))))
        return torch.flatten(y, 1), nn.functional.adaptive_avg_pool3d(y, 1)


class Sequence(nn.Module):
    """BatchNorm1d over (N, C, L) with no convolution: the input stays (N, C, L) in Keras."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.bn(x))


@pytest.mark.parametrize("cls, shape, bn", [(Signal, (3, 8), 1), (Volume, (2, 4, 4, 4), 2),
                                            (Sequence, (3, 5), 1)],
                         ids=["conv1d", "conv3d", "bn1d-ncl"])
def test_conv1d_conv3d_and_their_batch_norm(cls, shape, bn):
    module = trained(cls(), shape)
    program = torch.export.export(module, (torch.randn(4, *shape),))
    model, _, pairs, info = both_ways(program, cls.__name__)
    assert len(pairs) == bn
    assert info["inputs"] == ["same" if cls is Sequence else "cf"]
    if cls is Sequence:
        assert pairs[0][0].axis in (1, [1])
    x = np.random.default_rng(1).normal(size=(6, *shape)).astype("float32")
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x))
    want = want if isinstance(want, tuple) else (want,)
    got = model(layout.to_keras(x, info["inputs"][0]), training=False)
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, w, where in zip(got, want, info["outputs"]):
        assert verify.relative(layout.to_torch(keras.ops.convert_to_numpy(g), where),
                               w.numpy()) <= 1e-5


class Norms(nn.Module):
    """LayerNorm over (C, H, W), over (H, W) and over W of a convolution's output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.chw = nn.LayerNorm((3, 4, 5))
        self.hw = nn.LayerNorm((4, 5))
        self.w = nn.LayerNorm(5)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.w(self.hw(self.chw(self.conv(x)))))


def test_layer_norm_over_the_last_axes_of_a_convolution():
    module = trained(Norms(), (2, 4, 5))
    with torch.no_grad():  # weights that are not all ones, so that their order matters
        for norm in (module.chw, module.hw, module.w):
            norm.weight.copy_(torch.rand_like(norm.weight) + 0.5)
            norm.bias.copy_(torch.randn_like(norm.bias))
    model, _, _, _ = both_ways(torch.export.export(module, (torch.randn(4, 2, 4, 5),)), "norms")
    axes = [layer.axis for layer in model.layers
            if isinstance(layer, keras.layers.LayerNormalization)]
    assert axes == [[1, 2, 3], [1, 2], [2]]


def test_keras_layer_norm_over_channels_and_asymmetric_same_padding():
    """Keras's "same" with stride 2 on an even size (and an even kernel) pads one more after
    than before: PyTorch gets that explicit padding."""
    x = keras.Input((8, 7, 3))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # H: (0, 1), W: (1, 1)
    y = keras.layers.LayerNormalization(axis=-1)(y)
    y = keras.layers.Conv2D(4, 4, padding="same", groups=2)(y)  # (1, 2) both
    y = keras.layers.LayerNormalization(axis=[2, 3])(y)
    y = keras.layers.BatchNormalization(momentum=0.8)(y)
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D()(y))
    model(np.random.default_rng(0).normal(size=(8, 8, 7, 3)).astype("float32"), training=True)
    program, pairs, info = keras_to_torch.export(model)
    result = verify.compare(model, program, pairs, info)
    assert max(result[k] for k in KEYS) <= 1e-5, result
    pads = [n.args[1] for n in program.graph.nodes if n.target == torch.ops.aten.pad.default]
    assert [list(p) for p in pads] == [[1, 1, 0, 1], [1, 2, 1, 2]]
    back, _, back_pairs, back_info = torch_to_keras.to_keras(program)
    back_result = verify.compare(back, program, back_pairs, back_info)
    assert max(back_result[k] for k in KEYS) <= 1e-5, back_result
    print("keras-same", {k: f"{result[k]:.2g}" for k in KEYS},
          {k: f"{back_result[k]:.2g}" for k in KEYS})


def test_keras_batch_norm_over_the_features_of_a_sequence():
    """Keras BN over the last axis of (N, T, F): PyTorch's BatchNorm1d wants the features on
    axis 1, so it is permuted around it, and back in Keras as one BN layer."""
    x = keras.Input((5, 4))
    y = keras.layers.BatchNormalization(momentum=0.5)(keras.layers.Dense(6)(x))
    model = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(y)))
    model(np.random.default_rng(0).normal(size=(8, 5, 4)).astype("float32"), training=True)
    program, pairs, info = keras_to_torch.export(model)
    result = verify.compare(model, program, pairs, info)
    back, _, back_pairs, back_info = torch_to_keras.to_keras(program)
    again = verify.compare(back, program, back_pairs, back_info)
    assert max(max(r[k] for k in KEYS) for r in (result, again)) <= 1e-5, (result, again)
    assert [layer.axis for layer, _ in back_pairs] in ([-1], [[2]], [2])
    print("keras-sequence", {k: f"{result[k]:.2g}" for k in KEYS},
          {k: f"{again[k]:.2g}" for k in KEYS})


class Ops(nn.Module):
    """Two inputs, two outputs; an SE-style product, gelu, silu, hardswish, ReLU6, cat,
    arithmetic with numbers and PyTorch's own padding='same'."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 4, padding="same")
        self.bn = nn.BatchNorm2d(4)
        self.gate = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(6, 4)
        self.bn1 = nn.BatchNorm1d(4)

    def forward(self, x, v):
        y = torch.relu(self.bn(self.conv(x)))
        y = y * torch.sigmoid(self.gate(y.mean((2, 3), keepdim=True)))
        y = torch.cat([nn.functional.gelu(y), nn.functional.hardswish(y) * 2.0 + 1], 1)
        z = nn.functional.relu6(self.bn1(self.fc(v))) / 4 - nn.functional.silu(self.fc(v))
        return y, z - 0.5


def test_more_ops_and_several_inputs_and_outputs(tmp_path, capsys):
    module = trained(Ops(), (3, 5, 5), (6,))
    program = torch.export.export(module, (torch.randn(4, 3, 5, 5), torch.randn(4, 6)))
    model, _, _, info = both_ways(program, "ops")
    with capsys.disabled():
        print(capsys.readouterr().out)
    assert (len(model.inputs), len(model.outputs)) == (2, 2)
    assert info["outputs"] == ["cf", "same"]
    torch.export.save(program, str(tmp_path / "two.pt2"))
    np.save(tmp_path / "x.npy", np.zeros((64, 3, 5, 5), "float32"))
    assert main(["check", str(tmp_path / "two.pt2"), "--data", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 input(s) and 2 output(s)" in err and len(err.splitlines()) == 1, err


def test_refused_ops_are_one_line_with_the_nearest_supported_form(tmp_path, capsys):
    def save(module, *shapes, decompose=False):
        program = torch.export.export(module.eval(), tuple(torch.randn(4, *s) for s in shapes))
        if decompose:
            program = program.run_decompositions()
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.pt2"
        torch.export.save(program, str(path))
        return path

    cnn = nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2))
    depthwise = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.DepthwiseConv2D(3)])
    depthwise.save(tmp_path / "dw.keras")
    from bnlab.layers import BatchNorm

    frozen = BatchNorm(momentum=0.9, trainable=False)
    mixed = keras.Sequential([keras.Input((3,)), BatchNorm(momentum=None), frozen])
    mixed.save(tmp_path / "mixed.keras")
    cases = [(save(cnn, (2, 6, 6), decompose=True), "before decompositions"),
             (save(nn.Sequential(nn.Linear(3, 3), nn.GELU("tanh")), (3,)),
              "GELU() (exact) is covered"),
             (save(nn.Sequential(nn.Linear(3, 3), nn.Hardtanh(-2, 2)), (3,)), "(0, max) (ReLU6)"),
             (tmp_path / "dw.keras", "nearest: Conv2D(groups=channels)"),
             (tmp_path / "mixed.keras", "give the momentum=None layers a momentum")]
    for source, words in cases:
        target = source.with_suffix(".keras" if source.suffix == ".pt2" else ".pt2")
        assert main(["convert", str(source), str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
        assert not target.exists()


def test_check_on_a_conv1d_pt2_with_momentum_none_and_nclt_data(tmp_path, capsys):
    import json

    module = trained(nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4, momentum=None),
                                   nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3)), (2, 8))
    torch.export.save(torch.export.export(module.eval(), (torch.randn(4, 2, 8),)),
                      str(tmp_path / "sig.pt2"))
    x = np.random.default_rng(3).normal(size=(80, 2, 8)).astype("float32")  # (N, C, L)
    np.savez(tmp_path / "sig.npz", x=x, y=np.arange(80) % 3)
    assert main(["check", str(tmp_path / "sig.pt2"), "--data", str(tmp_path / "sig.npz"),
                 "--batch-size", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(row["layer"], row["momentum"]) for row in result["layers"]] == [("1", None)]
    assert not {"epsilon", "momentum"} & {f["kind"] for f in result["findings"]}
    np.savez(tmp_path / "nlc.npz", x=x.transpose(0, 2, 1))  # Keras's order: one line, exit 2
    assert main(["check", str(tmp_path / "sig.pt2"), "--data", str(tmp_path / "nlc.npz")]) == 2
    assert "the model wants (N, 2, 8)" in capsys.readouterr().err

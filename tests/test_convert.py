"""bnlab.tools.convert and `bnlab convert`: real PyTorch models exported with torch.export,
converted to Keras and back, held against PyTorch's own outputs and updated running statistics
(JAX backend on the Keras side)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
from torch import nn  # noqa: E402

from bnlab import models  # noqa: E402
from bnlab.cli import main  # noqa: E402
from bnlab.tools.convert import keras_to_torch, layout, torch_to_keras, verify  # noqa: E402

F = nn.functional


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16, momentum=0.2),
                                 nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8),
                                 nn.BatchNorm1d(8, affine=False), nn.Tanh(), nn.Linear(8, 4))

    def forward(self, x):
        return self.net(x)


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.LeakyReLU(0.1),
            nn.AvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
                                        nn.BatchNorm1d(10), nn.ELU(), nn.Linear(10, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.bn = nn.BatchNorm2d(8, track_running_stats=False)
        self.fc = nn.Linear(8 * 6 * 6, 6)
        self.ln = nn.LayerNorm(6)

    def forward(self, x):
        y = torch.sigmoid(self.bn(torch.relu(self.gn(self.conv(x)))))
        return self.ln(self.fc(torch.flatten(y, 1)))


CASES = {"mlp": (MLP, (12,)), "vgg": (VGG, (3, 16, 16)), "resnet": (ResNet, (3, 8, 8)),
         "groupnorm": (GroupNormNet, (3, 6, 6))}


def exported(name):
    """The model after a few training steps (non-trivial running statistics), exported."""
    cls, shape = CASES[name]
    torch.manual_seed(0)
    module = cls().train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(8, *shape) * 2 + 1)
    return module, torch.export.export(module, (torch.randn(4, *shape),))


@pytest.mark.parametrize("name", list(CASES))
def test_torch_to_keras_and_back_agree_with_pytorch(name, tmp_path, capsys):
    module, program = exported(name)
    model, names, pairs, info = torch_to_keras.to_keras(program)
    shape = CASES[name][1]
    x = np.random.default_rng(1).normal(size=(8, *shape)).astype("float32")

    # against the module itself (not only its graph): eval outputs
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    where = info["inputs"][0]
    got = model.predict(layout.to_keras(x, where), batch_size=len(x), verbose=0)  # compiled whole
    assert verify.relative(layout.to_torch(got, info["outputs"][0]), want) <= 1e-5
    # against its graph: inference and one training step with the running statistics
    result = verify.compare(model, program, pairs, info)
    for key in ("inference", "training", "running_mean", "running_var"):
        assert result[key] <= 1e-5, (key, result)
    assert result["biased"] == []
    bn = [layer for layer, _ in pairs]
    assert all(layer.unbiased_moving_variance for layer in bn)
    torch_bn = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and m.track_running_stats]
    assert [layer.momentum for layer in bn] == pytest.approx([1 - m.momentum for m in torch_bn])
    assert all(names[layer.name] in dict(module.named_modules()) for layer in bn)

    # and back: Keras -> .pt2 -> the same numbers
    back, back_pairs, back_info = keras_to_torch.export(model)
    again = verify.compare(model, back, back_pairs, back_info)
    for key in ("inference", "training", "running_mean", "running_var"):
        assert again[key] <= 1e-5, (key, again)
    print(name, {k: f"{v:.2g}" for k, v in result.items() if k != "biased"},
          {k: f"{v:.2g}" for k, v in again.items() if k != "biased"})


def test_track_running_stats_false_uses_batch_statistics_in_inference_too():
    _, program = exported("groupnorm")
    model, _, _, _ = torch_to_keras.to_keras(program)
    x = np.random.default_rng(2).normal(size=(8, 6, 6, 3)).astype("float32")
    alone = model.predict(x[:4], batch_size=4, verbose=0)
    together = model.predict(x, batch_size=len(x), verbose=0)[:4]
    assert np.max(np.abs(alone - together)) > 1e-3


def test_bnlab_model_to_pt2_and_back_with_the_cli(tmp_path, capsys):
    model = models.build("lenet", norm="keras", seed=0)
    x = np.random.default_rng(0).normal(size=(16, 28, 28, 1)).astype("float32")
    model(x, training=True)
    model.save(tmp_path / "lenet.keras")
    assert main(["convert", str(tmp_path / "lenet.keras"), str(tmp_path / "lenet.pt2")]) == 0
    out = capsys.readouterr().out
    assert "largest relative difference" in out and "biased variance" in out
    assert main(["convert", str(tmp_path / "lenet.pt2"), str(tmp_path / "back.keras")]) == 0
    back = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(back(x, training=False), model(x, training=False), rtol=1e-5,
                               atol=1e-6)


def test_unsupported_op_and_bad_paths_are_one_line_and_exit_2(tmp_path, capsys):
    class Exp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.exp(self.fc(x))

    torch.export.save(torch.export.export(Exp(), (torch.randn(4, 4),)),
                      str(tmp_path / "exp.pt2"))
    (tmp_path / "junk.pt2").write_text("not a program")
    (tmp_path / "taken.keras").write_text("mine")
    cases = [(["exp.pt2", "exp.keras"], "unsupported op aten.exp.default at node exp"),
             (["junk.pt2", "junk.keras"], "not a PyTorch exported program"),
             (["missing.pt2", "m.keras"], "no model file"),
             (["exp.pt2", "taken.keras"], "exists"),
             (["exp.pt2", "exp.onnx"], "convert wants")]
    for (source, target), words in cases:
        assert main(["convert", str(tmp_path / source), str(tmp_path / target)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "taken.keras").read_text() == "mine"
    assert not (tmp_path / "exp.keras").exists()


def test_a_module_left_in_eval_mode_becomes_a_frozen_layer_and_back():
    module, _ = exported("mlp")
    module.train()
    module.net[1].eval()  # fine-tuning with this BN's statistics fixed
    program = torch.export.export(module, (torch.randn(4, 12),))
    model, names, pairs, info = torch_to_keras.to_keras(program)
    frozen = [layer for layer, _ in pairs if not layer.trainable]
    assert [names[layer.name] for layer in frozen] == ["net.1"]
    result = verify.compare(model, program, pairs, info)
    assert max(result[k] for k in ("inference", "training", "running_mean",
                                   "running_var")) <= 1e-5, result
    back, back_pairs, back_info = keras_to_torch.export(model)
    assert max(v for k, v in verify.compare(model, back, back_pairs, back_info).items()
               if k != "biased") <= 1e-5


def test_check_on_a_pt2_names_the_pytorch_modules(tmp_path, capsys):
    import json

    module, program = exported("vgg")
    torch.export.save(program, str(tmp_path / "vgg.pt2"))
    x = np.random.default_rng(3).normal(size=(160, 3, 16, 16)).astype("float32")  # NCHW
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(160) % 3)
    assert main(["check", str(tmp_path / "vgg.pt2"), "--data", str(tmp_path / "data.npz"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["layer"] for row in result["layers"]] == ["features.1", "features.5",
                                                          "classifier.2"]
    assert not {"epsilon", "momentum"} & {f["kind"] for f in result["findings"]}

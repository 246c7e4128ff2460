"""Experiments from TOML files: the examples load, a good file runs end to end, and every kind of
bad file is one line naming the file and the key, exit 2, and nothing written."""

from pathlib import Path

import pytest

from bnlab import cli
from bnlab.lab import experiment_file, experiments
from bnlab.results.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

GOOD = """
name = "tiny-norms"
title = "Two norms at two batch sizes"
model = "mlp"
split = { validation = 500 }
optimizer = { name = "SGD", learning_rate = 0.01 }
batch_size = 32
epochs = 1

[[arms]]
name = "bn-fast"
norm = "scratch"
batch_size = 64
learning_rate = 0.05

[grid]
norm = ["scratch", "layer"]
batch_size = [16, 32]

[[comparisons]]
a = "layer-16"
b = "scratch-16"
question = "LN vs BN at 16"
"""


def write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_examples_load():
    grid = experiment_file.load(EXAMPLES / "norms-by-batch-size.toml")
    assert [a.name for a in grid.arms] == ["keras-4", "keras-32", "group-4", "group-32",
                                           "layer-4", "layer-32"]
    assert grid.arm("group-4").model == {"norm": "group"}
    assert grid.arm("group-4").training == {"batch_size": 4}
    spelled = experiment_file.load(EXAMPLES / "lenet-renorm-ghost.toml")
    assert spelled.arm("ghost-16").model["norm_options"] == {"virtual_batch_size": 16}
    assert spelled.source.endswith("lenet-renorm-ghost.toml") and spelled.model == "lenet"


def test_arms_own_batch_size_and_learning_rate_reach_the_trial_config(tmp_path):
    experiment = experiment_file.load(write(tmp_path, GOOD))
    configs = {arm.name: experiments.trial_config(experiment, arm, 1) for arm in experiment.arms}
    assert list(configs) == ["bn-fast", "scratch-16", "scratch-32", "layer-16", "layer-32"]
    assert configs["bn-fast"]["batch_size"] == 64
    assert configs["bn-fast"]["optimizer"] == {"name": "SGD", "learning_rate": 0.05}
    assert configs["layer-16"]["batch_size"] == 16
    assert configs["layer-16"]["optimizer"] == {"name": "SGD", "learning_rate": 0.01}
    assert configs["layer-16"]["model"] == {"name": "mlp", "norm": "layer"}
    # the built-in experiments' configs keep their keys and values
    lenet = experiments.get("lenet-bn")
    config = experiments.trial_config(lenet, lenet.arm("keras"), 1)
    assert config["batch_size"] == 64 and config["optimizer"] == lenet.optimizer


def test_a_good_file_end_to_end(tmp_path, monkeypatch, capsys, fashion_mnist):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD)
    argv = ["run", str(path), "--arms", "bn-fast,scratch-16,layer-16", "--seeds", "1",
            "--limit", "2000", "--quiet", "--data-dir", str(fashion_mnist)]
    assert cli.main(argv) == 0
    assert "report: runs/tiny-norms/report.md" in capsys.readouterr().out
    with Store("runs/bnlab.sqlite") as store:
        trials = {t.arm: t for t in store.trials("tiny-norms")}
        assert sorted(trials) == ["bn-fast", "layer-16", "scratch-16"]
        assert trials["bn-fast"].config["batch_size"] == 64
        assert all(len(store.history(t.id)) == 1 for t in trials.values())
    report = (tmp_path / "runs" / "tiny-norms" / "report.md").read_text()
    assert "LN vs BN at 16" in report and f"bnlab run {path}" in report

    (tmp_path / "runs" / "tiny-norms" / "report.md").unlink()
    assert cli.main(["report", str(path)]) == 0
    assert (tmp_path / "runs" / "tiny-norms" / "report.md").exists()
    capsys.readouterr()
    assert cli.main(["list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bn-placement" in out and str(path) in out and "layer-32" in out


BAD = [
    # (what is wrong, the file's text or a replacement in GOOD, the message's key and allowed values)
    ("not TOML", "name = ", "not valid TOML"),
    ("unknown key", GOOD.replace("batch_size = 32", "batchsize = 32"),
     "batchsize: unknown key; allowed: name, title, description, dataset, model"),
    ("wrong type", GOOD.replace("epochs = 1", 'epochs = "one"'),
     "epochs: expected an integer, got 'one'"),
    ("unknown model", GOOD.replace('model = "mlp"', 'model = "resnet"'),
     "model: unknown 'resnet'; allowed: mlp, deep-mlp, lenet, deep-cnn, study-cnn"),
    ("unknown norm", GOOD.replace('norm = "scratch"', 'norm = "batch"'),
     "arms[0].norm: unknown 'batch'; allowed: none, keras, scratch, renorm, ghost, group, layer"),
    ("unknown norm in the grid", GOOD.replace('["scratch", "layer"]', '["scratch", "instance"]'),
     "grid (norm instance, batch_size 16).norm: unknown 'instance'; allowed: none, keras"),
    ("option the norm does not take", GOOD.replace('norm = "scratch"',
                                                   'norm = "layer"\nmomentum = 0.9'),
     "arms[0].norm_options: norm 'layer' takes no option 'momentum'; its norm_options: epsilon"),
    ("unknown arm key", GOOD.replace("learning_rate = 0.05", "lr = 0.05"),
     "arms[0].lr: unknown key; allowed: name, label, norm, placement"),
    ("unknown optimizer", GOOD.replace('"SGD"', '"Sgd"'),
     "optimizer.name: unknown 'Sgd'; allowed: SGD, Adam"),
    ("wrong type in the grid", GOOD.replace("[16, 32]", '[16, "32"]'),
     "grid.batch_size[1]: expected an integer, got '32'"),
    ("comparison of an unknown arm", GOOD.replace('a = "layer-16"', 'a = "layer-8"'),
     "comparisons[0].a: unknown 'layer-8'; allowed: bn-fast, scratch-16"),
    ("built-in name", GOOD.replace('"tiny-norms"', '"lenet-bn"'),
     "name: 'lenet-bn' is a built-in experiment; choose another name"),
    ("no length", GOOD.replace("epochs = 1", ""), "epochs: give exactly one of epochs or steps"),
    ("missing model", GOOD.replace('model = "mlp"', ""), "model: missing"),
]


@pytest.mark.parametrize("text,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_file_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, text,
                                                           message):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text)
    assert cli.main(["run", str(path), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"bnlab: error: {path}: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]  # no runs/, no store
    assert cli.main(["list", str(path)]) == 2  # list names the bad file too
    assert message in capsys.readouterr().err


def test_a_missing_file_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "nowhere.toml"]) == 2
    assert "bnlab: error: nowhere.toml: cannot read it" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

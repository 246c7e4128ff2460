"""The command line: listing, the errors a user can make, an end-to-end run, resume after kill -9."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bnlab import cli
from bnlab.results.store import Store

BNLAB = [sys.executable, "-m", "bnlab.cli"]


def main(*argv):
    return cli.main(list(argv))


def test_list_names_every_experiment(capsys):
    assert main("list") == 0
    out = capsys.readouterr().out
    for name in ("bn-placement", "lenet-bn", "deep-mlp", "deep-cnn"):
        assert name in out
    assert "arms: baseline, bn-after, bn-before, bn-before-elu" in out
    assert out.index("seed notebooks:") < out.index("bn-placement") < out.index("studies (")
    assert out.index("studies (") < out.index("ioffe-fig1") and "6 claims of the paper" in out


@pytest.mark.parametrize("argv,message", [
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'; known: bn-placement"),
    (["run", "bn-placement", "--arms", "bn-after,nope"], "unknown arm 'nope' for experiment"),
    (["run", "bn-placement", "--dataset", "cifar10"], "unknown dataset 'cifar10'"),
    (["run", "bn-placement", "--steps", "5"], "use --epochs, not --steps"),
    (["run", "deep-cnn", "--epochs", "5"], "use --steps, not --epochs"),
    (["report", "nope"], "unknown experiment 'nope'"),
    (["report", "bn-placement", "--store", "missing.sqlite"], "no results store at missing.sqlite"),
    (["summary", "resnet"], "unknown model 'resnet'"),
    (["run", "bn-placement", "--arms", ","], "--arms ',' names no arm"),
    (["run", "bn-placement", "--data-dir", "no-such-dir"], "--data-dir no-such-dir: no such folder"),
    (["run", "bn-placement", "--address", "auto"], "--address needs --executor ray"),
    (["summary", "lenet", "--norm", "instance"], "unknown norm 'instance'; choose one of none"),
    (["summary", "lenet", "--norm", "layer", "--norm-option", "groups=2"],
     "norm 'layer' takes no option 'groups'; its norm_options: epsilon"),
    (["summary", "lenet", "--norm", "group", "--norm-option", "groups=4"],
     "groups=4 must divide the channels of every norm layer of lenet"),
    (["summary", "lenet", "--norm", "ghost", "--norm-option", "virtual_batch_size"],
     "--norm-option wants KEY=VALUE with a TOML value"),
    (["summary", "lenet", "--norm", "ghost", "--norm-option", "virtual_batch_size=0"],
     "virtual_batch_size must be None (no ghost batches) or a positive int"),
    (["summary", "lenet", "--norm", "scratch", "--momentum", "2"],
     "BatchNorm momentum must be in [0, 1] or None, got 2.0"),
    (["summary", "lenet", "--norm", "renorm", "--norm-option", "renorm_clipping={rmax=1, rmin=2}"],
     "rmax should be greater than rmin"),
    (["summary", "lenet", "--placement", "middle"], "unknown placement 'middle'"),
    (["run", "no-such-file.toml"], "no-such-file.toml: cannot read it"),
])
def test_user_errors_give_one_line_and_exit_code_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(*argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlab: error: ") and message in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_a_bug_is_not_a_user_error_and_keeps_its_traceback(monkeypatch):
    """Only bnlab.errors.UserError is one line and exit 2: a ValueError from a bug propagates."""
    def buggy(args):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(cli, "cmd_list", buggy)
    with pytest.raises(ValueError, match="an internal inconsistency"):
        main("list")


def test_a_user_error_raised_inside_a_layer_call_is_one_plain_line(capsys, monkeypatch):
    """Keras re-raises an error from a layer's call with its arguments around the message, in
    ANSI bold; the command line prints the message alone."""
    import numpy as np

    from bnlab.errors import UserError
    from bnlab.layers import BatchNorm

    def call_badly(args):
        BatchNorm()(np.ones((4, 3), "float32"), training=True, mask=np.ones((4, 3, 2), bool))

    monkeypatch.setattr(cli, "cmd_list", call_badly)
    with pytest.raises(UserError) as raised:
        call_badly(None)
    assert "Arguments received" in str(raised.value)  # what Keras makes of it
    assert main("list") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["bnlab: error: The mask provided should be one dimension less than the "
                     "inputs. Received: mask.shape=(4, 3, 2), inputs.shape=(4, 3)"]


def test_errors_from_the_real_command_have_no_traceback(tmp_path):
    result = subprocess.run(BNLAB + ["run", "bn-placement", "--arms", "nope"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bnlab: error: unknown arm 'nope'")


def test_bad_option_values_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main("run", "bn-placement", "--seeds", "0")
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_missing_mnist_points_to_fashion_mnist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no mnist.npz there
    assert main("run", "lenet-bn", "--seeds", "1", "--limit", "100", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "MNIST" in err and "--dataset fashion_mnist" in err
    assert not (tmp_path / "runs" / "bnlab.sqlite").exists()  # refused before any write


def test_corrupt_dataset_file_is_named_with_its_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # truncated
    assert main("run", "bn-placement", "--data-dir", str(data), "--seeds", "1", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(data) in err and "fix:" in err
    assert not (tmp_path / "runs").exists()  # no empty store left behind


def test_summary_prints_parameters_and_bn_variables(capsys):
    assert main("summary", "mlp", "--norm", "scratch") == 0
    out = capsys.readouterr().out
    assert "271,346 total, 268,978 trainable, 2,368 non-trainable" in out
    assert "moving_mean" in out and "trainable=False" in out and "trainable=True" in out
    assert "BatchNorm" in out


def test_summary_of_other_norms_with_their_options(capsys):
    assert main("summary", "lenet", "--norm", "group", "--norm-option", "groups=2",
                "--norm-option", "epsilon=1e-5") == 0
    out = capsys.readouterr().out
    assert "44,878 total, 44,878 trainable, 0 non-trainable" in out
    assert out.count("(GroupNormalization, groups 2, epsilon 1e-05)") == 4
    assert main("summary", "lenet", "--norm", "renorm", "--norm-option",
                "renorm_clipping={rmax=3.0, dmax=5.0}") == 0
    out = capsys.readouterr().out
    assert "46,008 total, 44,878 trainable, 1,130 non-trainable" in out and "renorm_mean" in out


def test_two_trials_end_to_end_then_report_then_resume(tmp_path, monkeypatch, capsys,
                                                       fashion_mnist):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "bn-placement", "--arms", "baseline,bn-after", "--seeds", "1", "--epochs", "1",
            "--limit", "2000", "--quiet"]
    assert main(*argv) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "bn-after" in out and "report: runs/bn-placement/report.md" in out
    with Store("runs/bnlab.sqlite") as store:
        trials = store.trials("bn-placement")
        assert sorted(t.arm for t in trials) == ["baseline", "bn-after"]
        assert all(len(store.history(t.id)) == 1 for t in trials)
    folder = tmp_path / "runs" / "bn-placement"
    for name in ("report.md", "report.html", "curves.png", "final_accuracy.png"):
        assert (folder / name).stat().st_size > 500, name
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (folder / "report.md").read_text()
    assert "bn-after" in report and "baseline" in report and "BN vs none" in report

    (folder / "report.md").unlink()
    assert main("report", "bn-placement") == 0
    assert (folder / "report.md").exists()

    capsys.readouterr()
    assert main(*argv) == 0  # everything finished: nothing is trained again
    assert "2 of 2 trials already finished" in capsys.readouterr().out


def test_kill_9_in_the_middle_then_resume(tmp_path, fashion_mnist):
    """A run killed with SIGKILL leaves no unfinished trial marked finished; the next run
    completes only the missing ones."""
    argv = ["run", "bn-placement", "--arms", "baseline,bn-after", "--seeds", "2", "--epochs", "1",
            "--limit", "1000", "--quiet", "--no-report"]
    store_path = tmp_path / "runs" / "bnlab.sqlite"
    child = subprocess.Popen(BNLAB + argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    finished = 0
    while time.monotonic() < deadline and child.poll() is None:
        if store_path.exists():
            try:
                with sqlite3.connect(store_path, timeout=1) as conn:
                    finished = conn.execute(
                        "SELECT COUNT(*) FROM trials WHERE status='finished'").fetchone()[0]
            except sqlite3.Error:
                finished = 0
            if finished >= 1:
                break
        time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with Store(store_path) as store:
        done_before = {t.id for t in store.trials()}
        assert 1 <= len(done_before) < 4
    result = subprocess.run(BNLAB + argv, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(done_before)} of 4 trials already finished" in result.stdout
    with Store(store_path) as store:
        trials = store.trials()
        assert sorted((t.arm, t.seed) for t in trials) == [
            ("baseline", 1), ("baseline", 2), ("bn-after", 1), ("bn-after", 2)]
        assert done_before <= {t.id for t in trials}
        assert all(t.finished_at for t in trials)

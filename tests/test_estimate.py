"""bnlab.lab.estimate: the multiply-adds it counts and the demo's opening line."""

import pytest

from bnlab import cli, models
from bnlab.lab import estimate


def test_multiply_adds_of_the_seed_models():
    assert estimate.multiply_adds(models.build("mlp", norm="none")) == 784 * 300 + 300 * 100 + 1000
    # LeNet: 5×5 convs 1 → 6 at 24×24 and 6 → 16 at 8×8, then 256-120-84-10
    lenet = 24 * 24 * 25 * 6 + 8 * 8 * 25 * 6 * 16 + 256 * 120 + 120 * 84 + 84 * 10
    assert estimate.multiply_adds(models.build("lenet", norm="keras")) == lenet


def test_seconds_are_the_flops_at_the_rate_times_the_overhead():
    mlp = models.build("mlp", norm="none")
    got, rate = estimate.seconds(mlp, 55_000, 10, 3, 4, rate=56.0)
    flops = 6 * 266_200 * 55_000 * 10 * 3 * 4
    assert rate == 56.0
    assert got == pytest.approx(estimate.OVERHEAD * flops / 56e9 + 4 * estimate.COMPILE)
    assert estimate.host_gflops(tries=3) > 0


@pytest.mark.backend
def test_the_host_rate_is_measured_on_every_backend():
    assert 0.1 < estimate.host_gflops(tries=2) < 1e5


def test_demo_says_how_long_it_expects_to_take(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_run", lambda args: 0)  # the estimate alone, no training
    monkeypatch.setattr(estimate, "host_gflops", lambda: 56.0)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli.main(["demo"]) == 0
    line = capsys.readouterr().err
    assert "bn-placement, 4 arms × 3 seeds × 10 epochs" in line
    assert "56 GFLOP/s, so expect about 3 minutes on idle cores" in line
    assert "the load average is 9 on 2 cores now, so it will take longer" in line

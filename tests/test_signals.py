"""bnlab.signals in this process: an interrupt Python drops is sent again, not printed."""

import os
import signal
import sys
import time

import pytest

from bnlab import signals


class RaisesInDel:
    """Its ``__del__`` runs ``action``: Python drops whatever is raised there ("Exception
    ignored"), as it does in JAX's garbage-collector callback."""

    def __init__(self, action):
        self.action = action

    def __del__(self):
        self.action()


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # bytecode, where Python runs a pending signal's handler
        pass


def test_an_interrupt_dropped_inside_a_destructor_is_signalled_again(capfd):
    def interrupt_here():
        os.kill(os.getpid(), signal.SIGINT)
        spin(0.01)  # the handler raises KeyboardInterrupt here, inside __del__: dropped

    with pytest.raises(KeyboardInterrupt):
        with signals.writing():
            RaisesInDel(interrupt_here)  # deleted at once
            spin(10)  # the interrupt sent again lands here
    assert signals.received() == signal.SIGINT
    assert "Exception ignored" not in capfd.readouterr().err


def test_other_dropped_exceptions_go_to_the_hook_before_writing(monkeypatch):
    seen = []

    def collect(unraisable):
        seen.append(unraisable)

    monkeypatch.setattr(sys, "unraisablehook", collect)

    def fail():
        raise ValueError("not a signal")

    with signals.writing():
        RaisesInDel(fail)
        assert sys.unraisablehook is not collect
    assert sys.unraisablehook is collect  # restored
    assert [type(u.exc_value) for u in seen] == [ValueError]


def test_stray_timers_are_cancelled_so_they_cannot_hold_the_exit():
    """A library's non-daemon ``threading.Timer`` that an interrupt kept from being cancelled
    (JAX's 60-second TPU-search warning, seen once holding an interrupted `bnlab run`) is
    cancelled by the command's interrupted path (``bnlab.cli``); a daemon timer is left alone."""
    import threading

    fired = []
    stray = threading.Timer(60, fired.append, ("stray",))
    daemon = threading.Timer(0.2, fired.append, ("daemon",))
    daemon.daemon = True
    stray.start(), daemon.start()
    signals.cancel_stray_timers()
    stray.join(timeout=5)
    daemon.join(timeout=5)
    assert not stray.is_alive() and fired == ["daemon"]

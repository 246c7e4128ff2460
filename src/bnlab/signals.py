"""Ctrl-C (SIGINT) and SIGTERM end a bnlab command the same way, at any moment.

    handling()           around a command: a signal ends the process at once
    writing()            a block that may write: a signal raises KeyboardInterrupt instead
    received() -> int    the signal received (0 if none); exit_code(signum), message(signum)

A command starts with nothing to undo (arguments, imports of JAX and Keras, reading data), so there
a signal prints one line and exits with 128 + its number (130 for Ctrl-C, 143 for SIGTERM), without
running Python's cleanup: an exception raised inside JAX's start-up can be swallowed by a callback
(``Exception ignored in ...``) or leave a module half imported. Inside :func:`writing` (the store
is open, trials are claimed) the signal raises ``KeyboardInterrupt`` (:class:`Terminated` for
SIGTERM), so the driver marks the trials it holds failed (released for the next run) and temporary
files are removed; it is also remembered, so code that swallows the exception cannot make the run
go on (``bnlab.lab.sweep`` checks :func:`received` between units). Python itself drops an
exception raised inside a garbage-collector callback or a ``__del__`` (JAX runs one at every
collection) and prints it as ``Exception ignored ... Traceback``: inside :func:`writing` such a
dropped interrupt is not printed but sent again, so it lands in the command's own code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state = {"signum": 0, "immediate": False, "depth": 0}


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is."""


def exit_code(signum: int) -> int:
    return 128 + int(signum)


def message(signum: int, started: bool = True) -> str:
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    if not started:
        return f"bnlab: {what} before anything was written"
    return (f"bnlab: {what}; finished trials are stored, the others released: run the same "
            "command again to complete the rest")


def received() -> int:
    return _state["signum"]


def cancel_stray_timers():
    """Cancel the non-daemon threading.Timers still waiting. An interrupt that lands in a library
    between its timer's start and the ``try`` that cancels it (JAX's 60-second warning timer while
    it looks for a TPU, seen once) leaves a thread that holds the interpreter's exit until it
    fires."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and not thread.daemon:
            thread.cancel()


def _handler(signum, frame):
    _state["signum"] = signum
    if _state["immediate"]:
        os.write(2, (message(signum, started=False) + "\n").encode())
        os._exit(exit_code(signum))
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _send_again(unraisable, report):
    """``sys.unraisablehook`` inside :func:`writing`: our interrupt, dropped where Python cannot
    raise it, is signalled again a moment later, from another thread (``os.kill`` here would run
    the handler inside this hook, which drops it too); anything else is reported as before
    (``report``)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _state["signum"]:
        again = threading.Timer(0.05, os.kill, (os.getpid(), _state["signum"]))
        again.daemon = True
        again.start()
    else:
        report(unraisable)


@contextlib.contextmanager
def handling():
    """Handle SIGINT and SIGTERM within the block (a command): until :func:`writing`, by exiting at
    once. The handlers before it come back after, so a caller of ``bnlab.cli.main`` keeps its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in HANDLED}
    _state["immediate"] = True
    try:
        yield
    finally:
        _state["immediate"] = False
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def writing():
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt (and are remembered); the
    handlers before it come back after. Only in the main thread, where signals land."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"] == 0:
        _state["signum"] = 0  # a signal of an earlier block (in a test's process) is not this one's
    previous = {s: signal.signal(s, _handler) for s in HANDLED}
    immediate, _state["immediate"] = _state["immediate"], False
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _send_again(unraisable, hook)
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        _state["immediate"] = immediate
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)

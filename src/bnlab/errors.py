"""The one error type for a user's mistake: ``bnlab.errors.UserError``.

A ``UserError`` says what the user asked for is wrong (an unknown name, a bad option, a missing
or corrupt file, a store bnlab cannot use) in one line that names the thing and the fix. The
command line prints it as ``bnlab: error: ...`` and exits with 2; every other exception is a bug
and keeps its traceback. It is a ``ValueError``, so code that calls bnlab as a library and
catches ``ValueError`` for bad arguments (as Keras's layers raise them) keeps working.
"""

import re

_KERAS_CALL = re.compile(r"\x1b\[1m(.*?)\x1b\[0m", re.DOTALL)  # Keras's bold, original message
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UserError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit code 2."""


def one_line(exc):
    """The message of ``exc`` as one plain line: Keras re-raises an error from inside a layer's
    call with the call's arguments around the original message in bold; this keeps that message."""
    text = str(exc)
    inner = _KERAS_CALL.search(text)
    if inner:
        text = inner.group(1)
    text = _ANSI.sub("", text)
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())

"""The error contract of every `hornet` command: what is bad input, what is a fault, and how each is reported.

- bad input (``UsageError``, or ``ValueError`` / ``FileNotFoundError`` from the library): one line, exit 2;
- a fault while running (a non-finite loss, a full disk or a refused write): one line, exit 1;
- SIGTERM / SIGINT: ``Interrupted``, exit 128 + signal (143 / 130), after the fit has saved a resumable checkpoint.

``--debug`` or ``HORNET_DEBUG=1`` shows the traceback instead. Nothing here imports Lightning or torch.
"""

from __future__ import annotations

import os
import signal
from argparse import ArgumentError
from contextlib import contextmanager

from hornet.files import FILESYSTEM_ERRNOS

__all__ = [
    "EXIT_FAULT", "EXIT_USAGE", "Interrupted", "UsageError", "debug_requested", "exit_status", "interrupt_on_signals",
    "interrupted_by", "one_line", "raise_if_interrupted",
]  # fmt: skip

EXIT_USAGE = 2
EXIT_FAULT = 1
USAGE_ERRORS = (ValueError, FileNotFoundError, ArgumentError)  # besides UsageError: bad input from the library


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived during a fit or a suite (a BaseException, so Lightning's handlers let it through
    after its on-exception callbacks have saved a checkpoint). The process exits 128 + signal: 143 / 130."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


_received: list[int] = []  # the signals received inside the outermost interrupt_on_signals block, in order
_depth = 0  # how deep the interrupt_on_signals blocks are nested


@contextmanager
def interrupt_on_signals():
    """Turn SIGTERM and SIGINT into ``Interrupted`` inside the block; the previous handlers come back after it.

    An exception raised by a signal handler lands wherever the interpreter happens to be, and there CPython may lose
    it (pickle's C code drops it inside ``copyreg`` during a ``torch.save``, about 3 signals in 100 measured) or a
    context manager's exit may replace it (a half-written ``torch.save`` archive then fails with ``RuntimeError``).
    So every signal is also recorded: ``raise_if_interrupted`` raises a lost one at a safe point, and
    ``interrupted_by`` finds the signal behind an error that replaced it.
    """
    global _depth

    def interrupt(signum, frame):
        _received.append(signum)
        raise Interrupted(signum)

    if _depth == 0:
        _received.clear()
    _depth += 1
    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted_by(err: BaseException | None) -> Interrupted | None:
    """The ``Interrupted`` behind ``err``: itself, one in its chain of causes, or a signal received in the current
    ``interrupt_on_signals`` block whose exception was replaced or lost; None when no signal arrived."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Interrupted):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return Interrupted(_received[0]) if _received and _depth else None


def raise_if_interrupted() -> None:
    """Raise ``Interrupted`` if a signal arrived in the current block (its own exception was lost where it landed)."""
    if stop := interrupted_by(None):
        raise stop


def debug_requested(argv=()) -> bool:
    """``--debug`` on the command line or ``HORNET_DEBUG`` set (to anything but 0): show tracebacks."""
    return "--debug" in argv or os.environ.get("HORNET_DEBUG", "") not in ("", "0")


def exit_status(err: BaseException) -> int | None:
    """The exit status the contract gives ``err``: 2 for bad input, 1 for a fault; None for a bug (a traceback)."""
    if isinstance(err, (UsageError, *USAGE_ERRORS)):
        return EXIT_USAGE
    if isinstance(err, FloatingPointError) or (isinstance(err, OSError) and err.errno in FILESYSTEM_ERRNOS):
        return EXIT_FAULT
    return None


def _union_errors(message: str) -> list[str]:
    """The items of jsonargparse's "Errors:" list, each with its more-indented continuation lines: "- Problem with
    given class_path 'X':" is followed by the reason ("Option 'limit_train' is not accepted") on the next line."""
    items: list[tuple[int, list[str]]] = []  # (indent of the "- ", its lines)
    for line in message.splitlines():
        indent, text = len(line) - len(line.lstrip()), line.strip()
        if text.startswith("- "):
            items.append((indent, [text[2:]]))
        elif items and text and indent > items[-1][0]:
            items[-1][1].append(text)
    return [" ".join(lines) for _, lines in items]


def one_line(err: BaseException) -> str:
    """The error's message on one line, without the wrapping some layers add: for an error re-raised from a
    DataLoader worker, the worker's own message; for a class that failed inside a jsonargparse Union type (the
    datamodule's ``class_path``), that class's own error."""
    message = str(err)
    if "Original Traceback" in message:  # "Caught X in DataLoader worker process 0. Original Traceback ..."
        last = message.strip().splitlines()[-1]  # "package.module.XError: the message"
        message = last.partition(": ")[2] or last
    if "Does not validate against any of the Union subtypes" in message:  # "Errors:\n  - ours\n  - Expected..."
        errors = _union_errors(message)
        own = [e for e in errors if not e.startswith("Expected a <class 'NoneType'>")]
        message = own[0] if own else message
    return " ".join(message.split())

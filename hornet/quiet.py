"""What a run prints: hornet's lines, the progress bar and the result. Lightning's banners (the seed, the devices),
its tips and the warnings known to be harmless go to the run's ``lightning.log`` instead, kept there; ``--verbose``
shows everything as Lightning prints it. Other warnings still show.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["HARMLESS_WARNINGS", "LOG_FILE", "RunLog", "quiet_lightning"]

LOG_FILE = "lightning.log"
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# warnings that say nothing about this run's results (Lightning's hints about its own defaults, our data's layout)
HARMLESS_WARNINGS = (
    r".*does not have many workers.*",
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning's own use of a deprecated torch API
    r"The number of training batches .* is smaller than the logging interval.*",
    r"Checkpoint directory .* exists and is not empty.*",
    r"Found \d+ module\(s\) in eval mode at the start of training.*",
    r"You're resuming from a checkpoint that ended before the epoch ended.*",  # our sampler resumes mid-epoch
    r"The dirpath has changed from .*",
    r".*`training_step` returned `None`.*",
)
_HARMLESS = re.compile("|".join(f"(?:{pattern})" for pattern in HARMLESS_WARNINGS), re.DOTALL)


class RunLog(logging.Handler):
    """Lightning's messages of one run: held until the run's folder exists (nothing is written before a run
    starts), then appended to ``<run>/lightning.log``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.held: list[str] = []
        self.path: Path | None = None

    def write(self, line: str) -> None:
        if self.path is None:
            self.held.append(line)
            return
        with self.path.open("a") as handle:
            handle.write(line + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        self.write(self.format(record))

    def attach(self, run_dir: Path) -> None:
        """The run's folder now exists: write what was held, and what comes, to its lightning.log."""
        self.path = Path(run_dir) / LOG_FILE
        held, self.held = self.held, []
        for line in held:
            self.write(line)


@contextmanager
def quiet_lightning(log: RunLog | None = None):
    """Lightning's info messages and the harmless warnings to ``log`` (or nowhere: a suite's runs), its warnings and
    errors to stderr; the previous handlers come back after."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    for logger in loggers:
        logger.handlers = [console, *([log] if log else [])]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if _HARMLESS.match(str(message)):
            if log is not None:
                log.write(f"{category.__name__}: {message} ({filename}:{lineno})")
            return
        show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = showwarning
            yield
    finally:
        for logger, (handlers, propagate, level) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)

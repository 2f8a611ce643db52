"""The loggers of a run: metrics.csv always (suites and reports read it), TensorBoard by default, and any other
Lightning logger the config names, in addition to those two."""

from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from hornet.files import write_atomic

__all__ = ["RunCSVLogger", "run_loggers"]


class RunCSVLogger(Logger):
    """``metrics.csv`` in the run directory: one row per logging step, columns sorted by name.

    A fresh fit starts the file anew; a resumed fit, ``validate`` and ``test`` append to it (Lightning's CSVLogger
    deletes an existing file). A new metric widens the header: the file is then rewritten whole, atomically.
    """

    def __init__(self, run_dir: str | Path, *, keep_existing: bool) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.keep_existing = keep_existing
        self._pending: list[dict[str, Any]] = []
        self._columns: list[str] | None = None  # the file's header once it is known

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:  # what Lightning's trainer.log_dir is for a logger of its own: config.yaml goes here
        return str(self.run_dir)

    @property
    def log_dir(self) -> str:
        return str(self.run_dir)

    @property
    def path(self) -> Path:
        return self.run_dir / "metrics.csv"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Hyperparameters are in the run's config.yaml."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: value.item() if hasattr(value, "item") else value for key, value in metrics.items()}
        row["step"] = step if step is not None else len(self._pending)
        self._pending.append(row)

    @rank_zero_only
    def save(self) -> None:
        if not self._pending:
            return
        if self._columns is None:  # the first save of this invocation: continue the file, or start it anew
            self._columns = self._header() if self.keep_existing else []
            if not self.keep_existing:
                self.path.unlink(missing_ok=True)
        rows, self._pending = self._pending, []
        columns = sorted(set(self._columns).union(*rows))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if columns != self._columns and self.path.is_file():  # a wider header: rewrite the whole file
            with self.path.open(newline="") as handle:
                rows = list(csv.DictReader(handle)) + rows
            self.path.unlink()
        self._columns = columns
        fresh = not self.path.is_file()
        if fresh:
            write_atomic(self.path, lambda handle: self._write(handle, rows, header=True))
        else:
            with self.path.open("a", newline="") as handle:
                self._write(handle, rows, header=False)

    def _write(self, handle, rows: list[dict], *, header: bool) -> None:
        writer = csv.DictWriter(handle, fieldnames=self._columns)
        if header:
            writer.writeheader()
        writer.writerows(rows)

    def _header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            return next(csv.reader(handle), [])

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def _tensorboard_available() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def run_loggers(run_dir: Path, *, keep_existing: bool, configured: Any) -> list[Logger]:
    """The loggers of a run in ``run_dir``: metrics.csv first (so Lightning's ``trainer.log_dir`` is the run
    directory), then TensorBoard event files beside it, then whatever ``trainer.logger`` configured.

    ``configured`` is the config's ``trainer.logger``: None or True (the default loggers), False (metrics.csv only),
    or a Logger / list of Loggers to add.
    """
    loggers: list[Logger] = [RunCSVLogger(run_dir, keep_existing=keep_existing)]
    if configured is False:
        return loggers
    if _tensorboard_available():
        loggers.append(
            TensorBoardLogger(save_dir=str(run_dir.parent), name=run_dir.name, version="", default_hp_metric=False)
        )
    else:
        warnings.warn("tensorboard is not installed: no TensorBoard event files (metrics.csv is written)", stacklevel=2)
    if isinstance(configured, Logger):
        loggers.append(configured)
    elif isinstance(configured, (list, tuple)):
        loggers.extend(configured)
    return loggers

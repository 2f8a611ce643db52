"""How far a suite has come, shown where the user looks.

One process: the suite's line on top of Lightning's rich progress bar (``SuiteProgressBar``). Several workers: each
publishes its current run to a small JSON file (``PublishProgress``) and the suite's own process draws one line per
worker and the suite's ETA (``WorkersDisplay``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import RichProgressBar
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from hornet.files import write_json

__all__ = ["PublishProgress", "SuiteProgress", "SuiteProgressBar", "WorkersDisplay", "format_seconds"]

REFRESH_S = 1.0  # the suite's line and the worker files change at most this often


def format_seconds(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def eta(elapsed: float, progress: float, total: float) -> str:
    """Time left at the pace so far: ``progress`` of ``total`` (runs, fractions allowed) took ``elapsed`` seconds."""
    return format_seconds(elapsed / progress * (total - progress)) if progress > 0.05 else "--:--"


@dataclass
class SuiteProgress:
    """Where a suite stands in this process: runs done, the current run, and the clock."""

    suite: str
    total: int
    done: int = 0
    variant: str = ""
    seed: int = 0
    stage: str = ""
    started: float = field(default_factory=time.monotonic)
    run_fraction: float = 0.0  # of the current run, from its epochs and batches

    def describe(self) -> str:
        elapsed = time.monotonic() - self.started
        left = eta(elapsed, self.done + self.run_fraction, self.total)
        return (
            f"suite {self.suite}: run {min(self.done + 1, self.total)}/{self.total} {self.variant} seed {self.seed}"
            f" {self.stage} | elapsed {format_seconds(elapsed)} | ETA {left}"
        )

    def follow(self, trainer, total_batches: int | float | None) -> None:
        """Take the current run's fraction from the trainer (fit: epochs and batches; the test comes after 95%)."""
        if trainer.state.fn == "fit" and trainer.max_epochs:
            batches = max(int(total_batches or 1), 1) if trainer.training else 1
            within = trainer.fit_loop.epoch_loop.batch_progress.current.ready / batches if trainer.training else 0
            self.run_fraction = min((trainer.current_epoch + min(within, 1.0)) / trainer.max_epochs, 1.0) * 0.95


class SuiteProgressBar(RichProgressBar):
    """Lightning's RichProgressBar with the suite's line on top (a second rich Live display would not be drawn).

    It adds its line in ``_init_progress`` and reads ``progress`` / ``_progress_stopped``, RichProgressBar internals
    pinned by tests/test_lightning_contract.py.
    """

    def __init__(self, suite: SuiteProgress, **kwargs) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.suite_task = None
        self._last_update = 0.0

    def _init_progress(self, trainer) -> None:
        fresh = self.progress is None or self._progress_stopped
        super()._init_progress(trainer)
        if fresh and self.progress is not None:
            self.suite_task = self.progress.add_task(self.suite.describe(), total=self.suite.total)
            self._refresh_suite(trainer, force=True)

    def _refresh_suite(self, trainer, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or self.suite_task is None or (not force and now - self._last_update < REFRESH_S):
            return
        self._last_update = now
        self.suite.follow(trainer, self.total_train_batches)
        self.progress.update(self.suite_task, description=self.suite.describe(), completed=self.suite.done)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._refresh_suite(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_suite(trainer, force=True)


@dataclass
class WorkerStatus:
    """What a worker process is doing, as it publishes it for the suite's process."""

    run: str = ""  # variant:seed, empty between runs
    stage: str = ""
    fraction: float = 0.0
    done: int = 0  # runs this worker has finished

    @classmethod
    def read(cls, path: Path) -> WorkerStatus | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None


def publish(progress: SuiteProgress, path: Path) -> None:
    run = f"{progress.variant}:{progress.seed}" if progress.variant else ""
    status = WorkerStatus(run, progress.stage, progress.run_fraction, progress.done)
    write_json(path, asdict(status))


class PublishProgress(Callback):
    """In a worker process: write where its current run stands to ``path`` (at most once a second)."""

    def __init__(self, suite: SuiteProgress, path: Path) -> None:
        self.suite = suite
        self.path = path
        self._last_update = 0.0

    def _publish(self, trainer, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_update >= REFRESH_S:
            self._last_update = now
            self.suite.follow(trainer, trainer.num_training_batches)
            publish(self.suite, self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._publish(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._publish(trainer, force=True)


class WorkersDisplay:
    """The suite's process while its workers run: one line per worker (its run, stage and share done) and the
    suite's line (runs finished, elapsed, ETA), redrawn from the workers' status files."""

    def __init__(self, suite: str, total: int, status_files: list[Path], console: Console) -> None:
        self.suite, self.total, self.status_files = suite, total, status_files
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), console=console
        )
        self.suite_task = self.progress.add_task(f"suite {suite}", total=total)
        self.worker_tasks = [
            self.progress.add_task(f"  worker {k + 1}: starting", total=1.0) for k in range(len(status_files))
        ]

    def __enter__(self) -> WorkersDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, finished: int) -> None:
        """Redraw, ``finished`` runs of the suite's ``total`` having a result since it started."""
        in_flight = 0.0
        for path, task in zip(self.status_files, self.worker_tasks):
            status = WorkerStatus.read(path)
            if status is None:
                continue
            in_flight += status.fraction
            doing = f"{status.run} {status.stage}" if status.run else f"between runs ({status.done} done)"
            name = path.stem.replace("worker", "worker ")
            self.progress.update(task, description=f"  {name}: {doing}", completed=status.fraction)
        elapsed = time.monotonic() - self.started
        line = f"suite {self.suite}: {finished}/{self.total} runs | elapsed {format_seconds(elapsed)}"
        line += f" | ETA {eta(elapsed, finished + in_flight, self.total)}"
        self.progress.update(self.suite_task, description=line, completed=finished)

    def print(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, soft_wrap=True)

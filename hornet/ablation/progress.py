"""The suite's overall progress as one more line inside Lightning's rich progress display."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["SuiteProgress", "SuiteProgressBar", "format_seconds"]


def format_seconds(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class SuiteProgress:
    """Where a suite stands: runs done (this invocation), the current run, and the clock."""

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
        progress = self.done + self.run_fraction
        eta = format_seconds(elapsed / progress * (self.total - progress)) if progress > 0.05 else "--:--"
        return (
            f"suite {self.suite}: run {min(self.done + 1, self.total)}/{self.total} {self.variant} seed {self.seed}"
            f" {self.stage} | elapsed {format_seconds(elapsed)} | ETA {eta}"
        )


class SuiteProgressBar(RichProgressBar):
    """Lightning's RichProgressBar with the suite's line on top (a second rich Live display would not be drawn)."""

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
        if self.progress is None or self.suite_task is None or (not force and now - self._last_update < 1.0):
            return
        self._last_update = now
        if trainer.state.fn == "fit" and trainer.max_epochs:
            batches = max(self.total_train_batches or 1, 1) if trainer.training else 1
            within = (trainer.fit_loop.epoch_loop.batch_progress.current.ready / batches) if trainer.training else 0
            self.suite.run_fraction = min((trainer.current_epoch + min(within, 1.0)) / trainer.max_epochs, 1.0) * 0.95
        self.progress.update(self.suite_task, description=self.suite.describe(), completed=self.suite.done)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._refresh_suite(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_suite(trainer, force=True)

"""What a dry run says a suite will take, from measured cost rather than a guess.

Each distinct variant (by parameters and MACs) makes one short real run through the suite's own launcher: a fit of a
few training and validation batches and a test of a few batches, at the suite's batch size, with the CPU threads
each of the suite's workers will have. A clock on every batch splits its wall time into the cost of a training
batch, of an evaluation batch and what is left: the fixed cost of a run (building it, Lightning's start, the sanity
check, checkpoints, the test's start, the throughput timing). A run then takes

    fixed + epochs x (train batches x train cost + val batches x eval cost) + test batches x eval cost

and the suite's wall time is its pending runs dealt out to its workers in order, each taking the next run when free.
Finished runs of a variant give their own wall times instead.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Callback

__all__ = ["RunCost", "StepClock", "limited", "measure_run_cost", "suite_wall_time"]

TIMED_BATCHES = 4  # per stage of the short run: the first is a warm-up, the median of the rest is the cost
CLOCK_FILE = "step_clock.json"


class StepClock(Callback):
    """The time between consecutive batch ends of every training and evaluation (validation, test) loop, so a
    batch's cost includes fetching it from the loader; written to ``path`` after the test. A loop's first batch
    (its interval would include the loop's start) is not timed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times: dict[str, list[float]] = {"train": [], "eval": []}
        self.batches = 0  # every batch of the short run, timed or not
        self._last: float | None = None

    def _loop_start(self, *_) -> None:
        self._last = None

    def _batch_end(self, kind: str) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times[kind].append(now - self._last)
        self._last, self.batches = now, self.batches + 1

    on_train_epoch_start = on_validation_epoch_start = on_test_epoch_start = _loop_start

    def on_train_batch_end(self, *_) -> None:
        self._batch_end("train")

    def on_validation_batch_end(self, *_) -> None:
        self._batch_end("eval")

    def on_test_batch_end(self, *_) -> None:
        self._batch_end("eval")

    def on_validation_epoch_end(self, *_) -> None:
        self._last = None  # the training loop goes on after validation: its next interval would include it

    def on_test_end(self, trainer, pl_module) -> None:
        Path(self.path).write_text(json.dumps({**self.times, "batches": self.batches}))


@dataclass(frozen=True)
class RunCost:
    """Seconds: a run's fixed cost, one training batch, one evaluation batch (validation or test)."""

    fixed: float
    train_batch: float
    eval_batch: float

    def run_seconds(self, epochs: int, train_batches: int, val_batches: int, test_batches: int) -> float:
        return (
            self.fixed
            + epochs * (train_batches * self.train_batch + val_batches * self.eval_batch)
            + (test_batches * self.eval_batch)
        )


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_run_cost(launcher, config: dict, *, threads: int) -> RunCost:
    """One short real run of ``config`` (TIMED_BATCHES batches of each stage, one epoch, in a temporary folder)
    through ``launcher.fit_and_test``, with ``threads`` CPU threads."""
    from hornet.ablation.progress import SuiteProgress
    from hornet.runs import RunDir

    with tempfile.TemporaryDirectory(prefix="hornet-estimate-") as folder:
        clock = str(Path(folder) / CLOCK_FILE)
        trainer = dict(config.get("trainer") or {})
        trainer |= {
            "max_epochs": 1, "limit_train_batches": TIMED_BATCHES, "limit_val_batches": TIMED_BATCHES,
            "limit_test_batches": TIMED_BATCHES, "enable_progress_bar": False,
            "callbacks": [*(trainer.get("callbacks") or []),
                          {"class_path": f"{__name__}.StepClock", "init_args": {"path": clock}}],
        }  # fmt: skip
        short = {**config, "trainer": trainer}
        with _threads(threads):
            start = time.perf_counter()
            launcher.fit_and_test(short, RunDir(Path(folder) / "run"), None, SuiteProgress("estimate", 1), None)
            wall = time.perf_counter() - start
        times = json.loads(Path(clock).read_text())
    train, evaluation = _steady(times["train"]), _steady(times["eval"])
    train_batches = TIMED_BATCHES  # the short run's batches: its training, the rest evaluation (sanity, val, test)
    fixed = wall - train_batches * train - (times["batches"] - train_batches) * evaluation
    return RunCost(fixed=max(fixed, 0.0), train_batch=train, eval_batch=evaluation)


def _steady(times: list[float]) -> float:
    """A batch's cost: the median of its timed intervals."""
    return statistics.median(times) if times else 0.0


def suite_wall_time(run_seconds: list[float], workers: int) -> float:
    """The runs, in order, dealt to ``workers`` that each take the next run when free: when the last one ends."""
    free_at = [0.0] * max(workers, 1)
    for seconds in run_seconds:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return max(free_at) if run_seconds else 0.0


def limited(batches: int, limit: int | float | None) -> int:
    """An epoch's batches under Lightning's ``limit_*_batches`` (a count, or a share of the epoch)."""
    if limit is None:
        return batches
    return min(batches, limit) if isinstance(limit, int) else int(batches * limit)

"""A suite's shared files, built for resumption and many writers (the run directories themselves: hornet.runs).

<suite_dir>/
  suite.json            the ablation section the suite last ran with (reference, variants, seeds)
  results.csv           one row per run with a result, rebuilt from every result.json under .results.lock
  <variant>/seed<k>/    run directories (hornet.runs), each with result.json, config_hash and, while it runs, .lock
"""

from __future__ import annotations

import csv
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from hornet.files import write_atomic
from hornet.runs import RunDir, result_columns, suite_runs

__all__ = ["RunLock", "rebuild_results", "results_lock"]


@contextmanager
def exclusive(path: Path):
    """An exclusive flock on the file ``path`` (created if missing), held for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def results_lock(suite_dir: Path):
    """Held only while results.csv is rebuilt."""
    return exclusive(suite_dir / ".results.lock")


def rebuild_results(suite_dir: Path, order: list[tuple[str, int]]) -> Path:
    """Rewrite ``results.csv`` from every run's result.json, in the suite's run order.

    Runs found on disk but not in ``order`` (a variant since removed from the config) go last. A score column (the
    EMA ones, say) appears only when some run has a value for it.
    """
    rank = {key: i for i, key in enumerate(order)}
    with results_lock(suite_dir):
        results = [result for run in suite_runs(suite_dir) if (result := run.read_result()) is not None]
        results.sort(key=lambda r: (rank.get((r.variant, r.seed), len(rank)), r.variant, r.seed))
        columns = result_columns(results)

        def write(handle) -> None:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for result in results:
                writer.writerow({c: "" if v is None else v for c, v in result.row().items()})

        target = suite_dir / "results.csv"
        write_atomic(target, write)
    return target


class RunLock:
    """``<run_dir>/.lock`` holding "host pid": one process per run. A lock left by a dead process on this host is
    stale and taken over; a lock from another host is respected (delete it by hand if that job is gone).

    Claims are made under a flock on ``.lock.claim``, so that contenders starting at once (a suite's workers all
    reach for its first run) never read a lock half-written or take over the same stale lock twice.
    """

    FILES = (".lock", ".lock.claim")  # the lock, and the file its claims are serialised on

    def __init__(self, run: RunDir) -> None:
        self.path, self.claim = (run.path / name for name in self.FILES)
        self.owner = f"{socket.gethostname()} {os.getpid()}"
        self.held = False

    def holder(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _stale(self, holder: str) -> bool:
        host, _, pid = holder.partition(" ")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return int(pid) == os.getpid()  # our own leftover from an earlier attempt in this process

    def acquire(self) -> bool:
        """Take the lock; False when another live process holds it."""
        with exclusive(self.claim):
            holder = self.holder()
            if holder is not None and not self._stale(holder):
                return False
            self.path.write_text(self.owner + "\n")  # an empty or stale lock is replaced
            self.held = True
            return True

    def release(self) -> None:
        if self.held and self.holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

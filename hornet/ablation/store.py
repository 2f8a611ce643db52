"""A suite's storage on disk, built for resumption and many writers.

<suite_dir>/
  suite.json            the ablation section the suite last ran with (reference, variants, seeds)
  results.csv           one row per finished run, rebuilt from every result.json under .results.lock
  <variant>/seed<k>/    a `hornet fit` run directory (config.yaml, meta.json, metrics.csv, checkpoints/) plus:
    result.json         written last (temp file + rename): the run's row; status ok / failed: ... / interrupted
    config_hash         the hash of the config the run was started with
    .lock               "host pid" while a process works on the run
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from hornet.files import write_atomic, write_json

__all__ = [
    "RESULT_COLUMNS",
    "RunLock",
    "newest_checkpoint",
    "read_result",
    "rebuild_results",
    "results_lock",
    "write_result",
]

RESULT_COLUMNS = (
    "suite", "variant", "seed", "overrides", "config_hash", "commit", "params", "macs", "infer_img_s", "train_img_s",
    "peak_mem_mb", "best_val_top1", "test_top1", "test_top5", "best_val_top1_ema", "test_top1_ema", "test_top5_ema",
    "epochs", "wall_s", "status",
)  # fmt: skip
EMA_COLUMNS = ("best_val_top1_ema", "test_top1_ema", "test_top5_ema")


def write_result(run_dir: Path, row: dict) -> None:
    """Write ``result.json`` atomically: the run counts as finished exactly when this file exists."""
    write_json(run_dir / "result.json", row)


def read_result(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to run that variant again") from None


@contextmanager
def results_lock(suite_dir: Path):
    """An exclusive flock on ``<suite_dir>/.results.lock`` (held only while results.csv is rebuilt)."""
    suite_dir.mkdir(parents=True, exist_ok=True)
    with (suite_dir / ".results.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rebuild_results(suite_dir: Path, order: list[tuple[str, int]]) -> Path:
    """Rewrite ``results.csv`` from every ``<variant>/seed<k>/result.json``, in the suite's run order.

    Runs found on disk but not in ``order`` (a variant since removed from the config) go last. EMA columns appear only
    when some run has them.
    """
    rank = {key: i for i, key in enumerate(order)}
    with results_lock(suite_dir):
        rows = []
        for path in suite_dir.glob("*/seed*/result.json"):
            row = read_result(path.parent)
            if row is not None:
                rows.append(row)
        rows.sort(
            key=lambda r: (rank.get((r.get("variant"), r.get("seed")), len(rank)), r.get("variant"), r.get("seed"))
        )
        has_ema = any(row.get(c) is not None for row in rows for c in EMA_COLUMNS)
        columns = [c for c in RESULT_COLUMNS if has_ema or c not in EMA_COLUMNS]

        def write(handle) -> None:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: ("" if row.get(c) is None else row[c]) for c in columns})

        target = suite_dir / "results.csv"
        write_atomic(target, write)
    return target


class RunLock:
    """``<run_dir>/.lock`` holding "host pid": one process per run. A lock left by a dead process on this host is
    stale and taken over; a lock from another host is respected (delete it by hand if that job is gone)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and not self._stale(holder):
                    return False
                self.path.unlink(missing_ok=True)  # stale (or vanished between the two calls): try once more
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(self.owner + "\n")
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held and self.holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume an unfinished run from: the newest of Lightning's hpc_ckpt_*.ckpt, last.ckpt and the
    on-exception checkpoint."""
    candidates = [*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt"]
    candidates += [run_dir / "checkpoints" / "on_exception.ckpt"]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None

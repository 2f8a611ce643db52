"""The run directory: its layout, its metadata, its checkpoints and its result, in one place.

Every `hornet fit` writes one run directory; a suite writes one per variant and seed under its own folder::

    <runs_dir>/<run_name>/          a single fit (run_name defaults to the config file's stem)
    <suite_dir>/<variant>/seed<k>/  a suite's run
        config.yaml                 the resolved config: `hornet fit --config <run>/config.yaml` repeats the run
        meta.json                   commit, package versions, hardware, threads, argv, seed
        metrics.csv                 every logged metric, kept across resumes
        tensorboard event files     the same metrics for TensorBoard (when it is installed)
        checkpoints/                best-epochNNN-*.ckpt (the monitored metric's best), epochNNN.ckpt, last.ckpt
        result.json                 (suites) the run's RunResult, written last: the run counts as finished with it
        config_hash                 (suites) the hash of the config the run was started with
        .lock                       (suites) "host pid" while a process works on the run (claimed under .lock.claim)

The runner, the results table, the report and the notebooks all read runs through this module.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from hornet.files import write_json

__all__ = [
    "BEST_PREFIX", "BOOKKEEPING_KEYS", "DEFAULT_RUNS_DIR", "RESULT_FILE", "RunDir", "RunResult", "class_args",
    "config_hash", "git_commit", "result_columns", "run_metadata", "suite_run_dir", "suite_runs",
]  # fmt: skip

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the repository, for an editable install
CONFIG_FILE, META_FILE, METRICS_FILE, RESULT_FILE = "config.yaml", "meta.json", "metrics.csv", "result.json"
BEST_PREFIX = "best-"  # checkpoints/best-epochNNN-<metric>X.ckpt: the best epoch by the task's monitored metric
DEFAULT_RUNS_DIR = "runs"  # the runs root: single runs in runs/<run_name>, suites in runs/<suite name> (--runs_dir)
# Keys of a run's config that say where it is written, what it starts from and how much it prints, not what it
# computes: not hashed.
BOOKKEEPING_KEYS = ("ablation", "base", "run_name", "runs_dir", "ckpt_path", "verbose")


def config_hash(config: dict) -> str:
    """A short stable hash of what a run computes: its resolved config (hornet.config.resolve_config, so layout and
    spelling do not change it) without the bookkeeping keys."""
    payload = {key: value for key, value in config.items() if key not in BOOKKEEPING_KEYS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def class_args(section: dict) -> dict:
    """The arguments of a config section (``model``, ``data``): its ``init_args`` when it names a ``class_path``,
    else the section itself (a flat section, as older run configs have)."""
    return (section.get("init_args") or {}) if "class_path" in section else section


def suite_run_dir(suite_dir: str | os.PathLike, variant: str, seed: int) -> Path:
    """Where a suite keeps the run of ``variant`` with ``seed``."""
    return Path(suite_dir) / variant / f"seed{seed}"


def suite_runs(suite_dir: str | os.PathLike) -> Iterator[RunDir]:
    """Every run directory of a suite that holds a result (finished, failed or interrupted)."""
    for path in sorted(Path(suite_dir).glob(f"*/seed*/{RESULT_FILE}")):
        yield RunDir(path.parent)


@dataclass
class RunResult:
    """One run of a suite, as results.csv shows it.

    ``scores`` holds the task's numbers: ``best_val_<metric>`` (the best validation value over the epochs) and
    ``test_<metric>`` (the test of the best checkpoint), e.g. best_val_top1, test_top1, test_top5 and their ``_ema``
    twins for classification. ``status`` is ``ok``, ``failed: <reason>`` or ``interrupted``.
    """

    suite: str
    variant: str
    seed: int
    overrides: str = "{}"  # the variant's overrides as JSON
    config_hash: str = ""
    commit: str | None = None  # HEAD when the run started
    params: int | None = None
    macs: int | None = None  # per image, at the run's input size
    infer_img_s: float | None = None  # measured on the test device after the test
    train_img_s: float | None = None  # median over the training batches
    peak_mem_mb: float | None = None  # CUDA max_memory_allocated, or the process's peak resident memory
    scores: dict[str, float | None] = field(default_factory=dict)
    epochs: int | None = None
    wall_s: float | None = None
    status: str = "pending"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, column: str):
        """A results.csv column of this run: a field, or one of the scores (None when the run has no such value)."""
        if column in self.scores:
            return self.scores[column]
        return getattr(self, column, None) if column in _KINDS else None

    def row(self) -> dict:
        """Flat, in column order: the scores take the place of the ``scores`` field."""
        out = {}
        for item in fields(self):
            if item.name == "scores":
                out.update(self.scores)
            else:
                out[item.name] = getattr(self, item.name)
        return out

    @classmethod
    def from_row(cls, row: dict) -> RunResult:
        """From result.json or a results.csv row (strings): known columns to their fields, the others to scores."""
        values, scores = {}, {}
        for key, value in row.items():
            kind = _KINDS.get(key)
            if kind is None:
                scores[key] = None if value in (None, "") else float(value)
            elif value not in (None, ""):  # empty: the field's default
                values[key] = {"int": lambda v: int(float(v)), "float": float, "str": str}[kind](value)
        return cls(**values, scores=scores)


_FIELDS = [f.name for f in fields(RunResult)]
HEAD_COLUMNS = tuple(_FIELDS[: _FIELDS.index("scores")])  # suite ... peak_mem_mb
TAIL_COLUMNS = tuple(_FIELDS[_FIELDS.index("scores") + 1 :])  # epochs, wall_s, status
_KINDS = {f.name: f.type.split(" ")[0] for f in fields(RunResult) if f.name != "scores"}  # "int" | "float" | "str"
NUMERIC_COLUMNS = tuple(name for name, kind in _KINDS.items() if kind in ("int", "float"))


def result_columns(results: list[RunResult]) -> list[str]:
    """results.csv's columns: the fixed ones, with every score any run has (in the order the runs name them)."""
    scores = dict.fromkeys(key for result in results for key, value in result.scores.items() if value is not None)
    return [*HEAD_COLUMNS, *scores, *TAIL_COLUMNS]


class RunDir:
    """One run directory (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    def newest_checkpoint(self) -> Path | None:
        """The checkpoint to resume an unfinished run from: the newest of Lightning's hpc_ckpt_*.ckpt (SLURM),
        last.ckpt and the on-exception checkpoint."""
        candidates = [*self.path.glob("hpc_ckpt_*.ckpt"), self.checkpoints / "last.ckpt"]
        candidates.append(self.checkpoints / "on_exception.ckpt")
        existing = [p for p in candidates if p.is_file()]
        return max(existing, key=lambda p: p.stat().st_mtime) if existing else None

    def best_checkpoint(self) -> Path | None:
        """The best epoch's checkpoint by the task's monitored metric (None before the first validation)."""
        best = sorted(self.checkpoints.glob(BEST_PREFIX + "*.ckpt"))
        return best[-1] if best else None

    def config(self) -> dict:
        import yaml

        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"{self.config_file} does not exist: {self.path} is not a finished `hornet fit` run"
            )
        return yaml.safe_load(self.config_file.read_text())

    def metrics(self) -> Iterator[dict[str, float]]:
        """The rows of metrics.csv with their logged (non-empty) values as floats."""
        if not self.metrics_file.is_file():
            return
        with self.metrics_file.open() as handle:
            for row in csv.DictReader(handle):
                yield {key: float(value) for key, value in row.items() if value not in ("", None)}

    def read_result(self) -> RunResult | None:
        path = self.path / RESULT_FILE
        try:
            return RunResult.from_row(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path} is not a run result ({err}); delete it to run that variant again") from None

    def write_result(self, result: RunResult) -> None:
        """Atomically: the run counts as finished exactly when this file exists."""
        write_json(self.path / RESULT_FILE, result.row())

    def write_meta(self, seed: int | None) -> None:
        write_json(self.path / META_FILE, run_metadata(seed))


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def git_commit() -> str | None:
    """The repository's HEAD commit (None outside a git checkout, e.g. for an installed package)."""
    return _git("rev-parse", "HEAD") or None


def run_metadata(seed: int | None) -> dict:
    """What reproduces a run: commit, package versions, hardware, threads, argv, seed."""
    import torch

    versions = {}
    for package in ("torch", "lightning", "timm", "torchmetrics", "jsonargparse", "hornet"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "commit": git_commit(),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "seed": seed,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

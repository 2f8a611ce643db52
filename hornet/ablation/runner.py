"""Run a suite: every selected variant x seed as one fit followed by a test, resumably.

A run is skipped when its result.json says ok (or failed, unless ``retry_failed``) with the same config hash,
resumed from its newest checkpoint when it was interrupted or killed, and started afresh otherwise. A finished run
whose config changed is an error unless ``rerun_changed``. SIGTERM / SIGINT stop the suite: the current run is
recorded as interrupted (its on-exception checkpoint keeps its progress) and the process exits 143 / 130.

The plan (hornet.ablation.plan) says what to run; workers (hornet.ablation.workers) run it side by side; this module
executes one run under its lock (reading its state once, there) and summarises.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from hornet.ablation.plan import RunLauncher, SuitePlan, part_scores
from hornet.ablation.progress import SuiteProgress, WorkersDisplay, publish
from hornet.ablation.publish import publish_suite
from hornet.ablation.spec import AblationConfig, AblationRun
from hornet.ablation.store import RunLock, rebuild_results, results_lock
from hornet.ablation.workers import (
    LEADER_ENV,
    WORKER_ENV,
    Leader,
    follow_leader,
    is_leader,
    start_worker,
    stop_workers,
    threads_of,
    worker_count,
)  # fmt: skip
from hornet.analysis.stats.report import is_fraction, render_table
from hornet.analysis.stats.scale import suite_scale
from hornet.errors import Interrupted, interrupt_on_signals, interrupted_by, one_line, raise_if_interrupted
from hornet.files import check_writable_dir, write_json, write_text
from hornet.runs import RunDir, RunResult, git_commit

__all__ = ["SuiteRunner"]


class SuiteRunner:
    """Plan, check and run one ablation suite, building and training each run through ``launcher``."""

    def __init__(self, spec: AblationConfig, base_config: dict, launcher: RunLauncher, *, console: Console) -> None:
        self.spec = spec
        self.base_config = base_config
        self.launcher = launcher
        self.console = console
        self.leader = is_leader()  # ranks > 0 of a multi-process run train alongside rank 0 but take no locks
        self.worker = os.environ.get(WORKER_ENV)  # "k/n" when this process is one of a suite's workers
        self.plan = SuitePlan(spec, base_config, launcher)
        self.suite_dir = self.plan.suite_dir
        self.status = self.workers_dir / f"worker{self.worker.partition('/')[0]}.json" if self.worker else None

    @property
    def workers_dir(self) -> Path:
        return self.suite_dir / ".workers"

    def say(self, text: str) -> None:
        """One line of the suite's output, printed as text (run failures quote code, which is not markup)."""
        self.console.print(f"suite {self.spec.name}: {text}", highlight=False, soft_wrap=True, markup=False)

    # --- the suite --------------------------------------------------------------------------------------------------
    def run(self) -> int:
        if not self.leader and os.environ.get(LEADER_ENV):  # a rank > 0 started by its rank 0's Lightning
            follow_leader(Path(os.environ[LEADER_ENV]), self._follow)
            return 0
        for run in self.plan.runs:
            self.plan.profile(run)  # every selected variant parses and builds before anything trains
        states = self.plan.states()
        self.plan.check_changed(states)
        if self.spec.dry_run:
            self.plan.print_plan(states, self.console)
            return 0
        check_writable_dir(self.suite_dir, key="ablation.output_dir / --runs_dir")
        if self.leader and not self.worker:
            metric = "test_" + self.plan.profile(self.plan.runs[0]).monitor.partition("/")[2]  # the monitor's twin
            self.suite_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.suite_dir / "suite.json", {**asdict(self.spec), "metric": metric})  # what reports need
            self._say_note()
        pending = [run for run in self.plan.runs if self.plan.to_do(states[run.key])]
        devices = self.plan.profile(self.plan.runs[0]).devices
        workers = worker_count(self.spec.workers, len(pending), devices)
        if workers > 1 and not self.worker and self.leader:
            return self.run_workers(workers, pending, devices)
        return self.run_here()

    def run_here(self) -> int:
        """The selected runs one after another in this process."""
        progress = SuiteProgress(self.spec.name, total=len(self.plan.runs))
        leader = Leader(self.workers_dir) if self.leader and self.plan.profile(self.plan.runs[0]).devices > 1 else None
        try:
            with interrupt_on_signals():
                for run in self.plan.runs:
                    progress.variant, progress.seed, progress.run_fraction = run.variant.name, run.seed, 0.0
                    self.execute(run, progress, leader)
                    raise_if_interrupted()  # a signal whose exception was lost between runs
                    progress.done += 1
                    if self.status:
                        progress.variant, progress.stage, progress.run_fraction = "", "", 0.0
                        publish(progress, self.status)  # between runs: nothing in flight
        except Interrupted as stop:
            self.console.print(f"[bold red]{escape(self._interrupted(stop))}[/]", highlight=False)
            return 128 + stop.signum
        finally:
            if leader is not None:
                leader.close()
        if not self.worker:
            self.summary()
        return 0

    def _interrupted(self, stop: Interrupted) -> str:
        return f"suite {self.spec.name} interrupted ({stop}); run the same command again to resume"

    def _follow(self, key: str) -> None:
        """Rank > 0: the run its rank 0 started, trained alongside it (rank 0 records it)."""
        run = next(run for run in self.plan.runs if run.key == key)
        run_dir = run.run_dir(self.suite_dir)
        progress = SuiteProgress(self.spec.name, total=len(self.plan.runs))
        self.launcher.fit_and_test(self.plan.configs[key], run_dir, run_dir.newest_checkpoint(), progress, None)

    # --- workers ----------------------------------------------------------------------------------------------------
    def run_workers(self, count: int, pending: list[AblationRun], devices: int) -> int:
        """Run the suite in ``count`` worker processes sharing the machine; draw their progress; on SIGTERM / SIGINT
        stop them all (each saves its run)."""
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        gpus = torch.cuda.device_count()
        threads = threads_of(count, devices)
        per_worker = max(gpus // count, 1) if gpus > 1 else 0
        status_files = [self.workers_dir / f"worker{k}.json" for k in range(1, count + 1)]
        for path in status_files:
            path.unlink(missing_ok=True)
        runner_args = (self.spec, self.base_config, self.launcher)
        processes = [
            start_worker(type(self), runner_args, k, count, threads=threads, workers_dir=self.workers_dir,
                         gpus=[(k - 1) * per_worker + i for i in range(per_worker)] if per_worker else [])
            for k in range(1, count + 1)
        ]  # fmt: skip
        where = f"{per_worker} GPU" if per_worker else f"{threads} CPU thread"
        where += f"{'s' * ((per_worker or threads) > 1)} each"
        self.say(f"{count} workers ({where}), logs in {self.workers_dir}")
        reported = {run.key: self._finished(run) for run in pending}
        display = WorkersDisplay(self.spec.name, len(pending), status_files, self.console)
        try:
            with interrupt_on_signals(), display:
                while any(p.is_alive() for p in processes):
                    time.sleep(0.5)
                    raise_if_interrupted()
                    self._report_finished(pending, reported, display)
                self._report_finished(pending, reported, display)
        except Interrupted as stop:
            stop_workers(processes)
            self.console.print(f"[bold red]{escape(self._interrupted(stop))}[/]", highlight=False)
            return 128 + stop.signum
        failed = [(k + 1, p.exitcode) for k, p in enumerate(processes) if p.exitcode]
        self.summary()
        if failed:
            self.say(f"workers {failed} (number, exit status) did not finish; see {self.workers_dir}")
            return max(abs(status) for _, status in failed)
        return 0

    def _finished(self, run: AblationRun) -> float | None:
        """When the run's result was last written (None: no result)."""
        path = run.run_dir(self.suite_dir).path / "result.json"
        return path.stat().st_mtime if path.is_file() else None

    def _report_finished(self, pending: list[AblationRun], reported: dict, display: WorkersDisplay) -> None:
        """Print the line of every run whose result appeared since the last look, and redraw."""
        for run in pending:
            written = self._finished(run)
            if written is not None and written != reported[run.key]:
                reported[run.key] = written
                outcome = self._outcome(run.run_dir(self.suite_dir).read_result())
                display.print(escape(f"suite {self.spec.name}: {run.key} {outcome}"))
        display.update(sum(not self.plan.to_do(self.plan.state(run)) for run in pending))

    # --- one run ----------------------------------------------------------------------------------------------------
    def execute(self, run: AblationRun, progress: SuiteProgress, leader: Leader | None = None) -> None:
        run_dir = run.run_dir(self.suite_dir)
        if not self.leader:  # SLURM's other ranks: same decisions as rank 0 (same files), no writes
            if self.plan.to_do(self.plan.state(run)):
                self.launcher.fit_and_test(self.plan.configs[run.key], run_dir, run_dir.newest_checkpoint(), progress,
                                           None)  # fmt: skip
            return
        lock = RunLock(run_dir)
        if not lock.acquire():
            if not self.worker:  # workers of one suite pass each other's runs by all the time: no news
                self.say(f"{run.key} is running in {lock.holder()}, skipped")
            return
        digest = self.plan.hashes[run.key]
        try:
            previous = run_dir.read_result()  # the run's state, read once, under its lock
            state = self.plan.state(run, previous)
            if not self.plan.to_do(state):
                self.say(f"{run.key} already {state}, skipped")
                return
            hash_file = run_dir.path / "config_hash"
            started_with = hash_file.read_text().strip() if hash_file.is_file() else None
            if state in ("changed", "failed") or (started_with is not None and started_with != digest):
                self._wipe(run_dir)  # a changed config or a retried failure starts from scratch
                previous = None
            write_text(hash_file, digest + "\n")
            if leader is not None:
                leader.announce(run.key)
            self._train(run, run_dir, progress, previous)
        finally:
            lock.release()

    def _train(self, run: AblationRun, run_dir: RunDir, progress: SuiteProgress, previous: RunResult | None) -> None:
        resume_from = run_dir.newest_checkpoint()
        wall_before = previous.wall_s or 0.0 if previous else 0.0
        result = self._new_result(run)
        start = time.monotonic()
        try:
            measured = self.launcher.fit_and_test(self.plan.configs[run.key], run_dir, resume_from, progress,
                                                  self.status)  # fmt: skip
            measured["scores"] = {**result.scores, **measured["scores"]}  # the parts' complexity first
            result = dataclasses.replace(result, **measured, status="ok")
        except Interrupted:
            result.status = "interrupted"
            raise
        except Exception as err:
            if stop := interrupted_by(err):  # the signal's exception was replaced on its way out
                result.status = "interrupted"
                raise stop from err
            result.status = f"failed: {type(err).__name__}: {one_line(err)[:300]}"
        finally:
            gc.collect()  # the run's trainer, model and data sit in reference cycles; free them before the next
            result.wall_s = round(wall_before + time.monotonic() - start, 1)
            run_dir.write_result(result)
            rebuild_results(self.suite_dir, self.plan.order)
            self.say(f"{run.key} {self._outcome(result)}")
            if self.spec.publish_dir:
                self._publish()

    def _publish(self) -> None:
        """Copy the suite's small files to ``ablation.publish_dir``; a failure is reported, the run stands."""
        try:
            with results_lock(self.suite_dir):  # one publisher at a time among the suite's workers
                published = publish_suite(self.suite_dir, self.spec.publish_dir)
            self.say(published.line())
        except (OSError, ValueError) as err:
            self.say(f"not published: {one_line(err)}")

    @staticmethod
    def _outcome(result: RunResult) -> str:
        """One line per run: its status, its test scores, its time."""
        scores = [f"{k} {100 * v:.2f}%" for k, v in result.scores.items() if k.startswith("test_") and v is not None]
        parts = [result.status if not result.ok else "ok", *scores, f"{result.wall_s:.0f} s"]
        return ", ".join(parts)

    @staticmethod
    def _wipe(run_dir: RunDir) -> None:
        for path in run_dir.path.iterdir():
            if path.name in RunLock.FILES:
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def _new_result(self, run: AblationRun) -> RunResult:
        profile = self.plan.profile(run)
        return RunResult(
            suite=self.spec.name, variant=run.variant.name, seed=run.seed,
            overrides=json.dumps(run.variant.overrides, sort_keys=True), config_hash=self.plan.hashes[run.key],
            commit=git_commit(), params=profile.params, macs=int(profile.macs), scores=part_scores(profile),
        )  # fmt: skip

    def summary(self) -> None:
        rows = []
        for run in self.plan.runs:
            result = run.run_dir(self.suite_dir).read_result()
            rows.append({
                "variant": run.variant.name, "seed": run.seed,
                "status": result.status if result else "not run (locked elsewhere)",
                **{f"{k}_%" if is_fraction(k) else k: "-" if v is None else round(100 * v if is_fraction(k) else v, 2)
                   for k, v in (result.scores if result else {}).items()},
                "wall_s": result.wall_s if result else "-",
            })  # fmt: skip
        columns = dict.fromkeys(key for row in rows for key in row)
        rows = [{c: row.get(c, "-") for c in columns} for row in rows]
        render_table(rows, title=f"suite {self.spec.name}: {self.suite_dir / 'results.csv'}", console=self.console)
        self._say_note()

    def _say_note(self) -> None:
        """The suite's scale (read from its runs' configs, with the caveat when they are not its longer schedule)
        and its own ``ablation.note``, at its start and under its summary."""
        configs = [self.plan.configs[run.key] for run in self.plan.runs]
        self.say(suite_scale(configs, [run.seed for run in self.plan.runs], self.spec.longer_schedule).line())
        if self.spec.note:
            self.say(self.spec.note)

"""Run a suite: every selected variant x seed as one fit followed by a test, resumably.

The runner decides what to run and records it; how one run is built and trained is handed to it (a ``RunLauncher``,
which `hornet fit` provides), so this module knows nothing of the CLI.

A run is skipped when its result.json says ok (or failed, unless ``retry_failed``) with the same config hash,
resumed from its newest checkpoint when it was interrupted or killed, and started afresh otherwise. A finished run
whose config changed is an error unless ``rerun_changed``. SIGTERM / SIGINT stop the suite: the current run is
recorded as interrupted (its on-exception checkpoint keeps its progress) and the process exits 143 / 130.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console

from hornet.ablation.progress import SuiteProgress, WorkersDisplay, format_seconds, publish
from hornet.ablation.publish import publish_suite
from hornet.ablation.spec import AblationConfig, AblationRun, config_hash, plan_runs, select_runs, variant_config
from hornet.ablation.store import RunLock, rebuild_results, results_lock
from hornet.analysis.complexity import count_complexity
from hornet.analysis.report import render_table
from hornet.errors import Interrupted, interrupt_on_signals, interrupted_by, one_line, raise_if_interrupted
from hornet.files import check_writable_dir, write_json, write_text
from hornet.runs import RunDir, RunResult, git_commit

__all__ = ["WORKER_ENV", "BuiltRun", "RunLauncher", "SuiteRunner", "VariantProfile", "is_leader"]

WORKER_ENV = "HORNET_SUITE_WORKER"  # "k/n" in the worker processes of a suite run with ablation.workers > 1


@dataclass(frozen=True)
class BuiltRun:
    """What a run's config builds to: the LightningModule (a hornet.lit.Task), the DataModule, and the number of
    epochs it trains."""

    module: Any
    data: Any
    max_epochs: int


class RunLauncher(Protocol):
    """How the runner builds and trains one run (implemented by `hornet fit`: hornet.training.SuiteLauncher)."""

    def build(self, config: dict, *, meta: bool) -> BuiltRun:
        """Parse and validate ``config`` like a hand-written one and build it (on the meta device if ``meta``);
        bad input raises ValueError."""

    def fit_and_test(
        self, config: dict, run: RunDir, resume_from: Path | None, progress: SuiteProgress, status: Path | None
    ) -> dict[str, Any]:
        """Fit ``config`` into ``run`` (resuming from ``resume_from``), test its best checkpoint, and return what was
        measured: RunResult fields (``scores``, ``train_img_s``, ``infer_img_s``, ``peak_mem_mb``, ``epochs``).
        ``progress`` follows the run; in a worker process ``status`` is the file to publish it to (no display)."""


@dataclass(frozen=True)
class VariantProfile:
    """What a variant builds to, counted on the meta device."""

    params: int
    macs: float
    parts: dict[str, tuple[int, float]]  # the task's network_parts: name -> (params, MACs), e.g. "decoder"
    monitor: str  # the task's validation metric, e.g. val/top1
    epochs: int
    img_size: int
    in_chans: int
    batch_size: int


def part_scores(profile: VariantProfile) -> dict[str, float]:
    """results.csv columns of the network's parts: ``<part>_params`` and ``<part>_macs`` (per image)."""
    return {f"{part}_{key}": value for part, (params, macs) in profile.parts.items()
            for key, value in (("params", params), ("macs", int(macs)))}  # fmt: skip


def is_leader() -> bool:
    """Whether this process is global rank 0 of its job (the others follow the same runs without writing)."""
    return all(int(os.environ.get(key, 0)) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class SuiteRunner:
    """Plan, check and run one ablation suite, building and training each run through ``launcher``."""

    def __init__(self, spec: AblationConfig, base_config: dict, launcher: RunLauncher, *, console: Console) -> None:
        self.spec = spec
        self.launcher = launcher
        self.console = console
        self.suite_dir = spec.suite_dir
        self.all_runs = plan_runs(spec)
        self.runs = select_runs(self.all_runs, spec.only)
        self.configs = {run.key: variant_config(base_config, run.variant, run.seed) for run in self.all_runs}
        self.order = [(run.variant.name, run.seed) for run in self.all_runs]
        self.profiles: dict[str, VariantProfile] = {}
        self.leader = is_leader()  # ranks > 0 of a multi-process run train alongside rank 0 but take no locks
        self.worker = os.environ.get(WORKER_ENV)  # "k/n" when this process is one of a suite's workers
        self.status = self.workers_dir / f"worker{self.worker.partition('/')[0]}.json" if self.worker else None

    @property
    def workers_dir(self) -> Path:
        return self.suite_dir / ".workers"

    # --- checks before anything runs ------------------------------------------------------------------------------
    def profile(self, run: AblationRun) -> VariantProfile:
        """Build the variant on the meta device (so a bad variant stops the suite before anything trains)."""
        name = run.variant.name
        if name not in self.profiles:
            try:
                built = self.launcher.build(self.configs[run.key], meta=True)
            except Exception as err:
                raise ValueError(f"ablation variant {name!r}: {one_line(err)}") from None
            data = built.data
            module = built.module
            complexity = count_complexity(
                module.network(), data.img_size, in_chans=data.in_chans, parts=module.network_parts
            )
            self.profiles[name] = VariantProfile(
                params=complexity.params,
                macs=complexity.macs,
                parts=complexity.parts,
                monitor=module.monitor,
                epochs=built.max_epochs,
                img_size=data.img_size,
                in_chans=data.in_chans,
                batch_size=data.batch_size,
            )
        return self.profiles[name]

    def state(self, run: AblationRun) -> str:
        """done / failed / changed / interrupted / pending, from the run's result and config hash."""
        result = run.run_dir(self.suite_dir).read_result()
        if result is None:
            return "pending"
        if result.config_hash != config_hash(self.configs[run.key]):
            return "changed"
        if result.ok:
            return "done"
        return "failed" if result.status.startswith("failed") else "interrupted"

    def _to_do(self, run: AblationRun) -> bool:
        """Whether running the suite now would (re)run ``run``: not finished, or failed with ``retry_failed``."""
        state = self.state(run)
        return state not in ("done", "failed") or (state == "failed" and self.spec.retry_failed)

    def check_changed(self) -> None:
        changed = [run.key for run in self.runs if self.state(run) == "changed"]
        if changed and not self.spec.rerun_changed:
            raise ValueError(
                f"finished runs whose config changed since they ran: {', '.join(changed)} (in {self.suite_dir}); "
                "pass --ablation.rerun_changed true to run them again, or restore the config"
            )

    # --- the plan ---------------------------------------------------------------------------------------------------
    def print_plan(self) -> None:
        seconds_per_mac_image = self._measured_speed()
        images = self._images_per_epoch() if seconds_per_mac_image is not None else None
        rows, total = [], 0.0
        to_do = [run for run in self.runs if self._to_do(run)]
        for run in self.runs:
            profile = self.profile(run)
            estimate = "-"
            if images is not None and profile.epochs and run in to_do:
                seconds = seconds_per_mac_image * profile.macs * images * profile.epochs
                total += seconds
                estimate = format_seconds(seconds)
            rows.append(
                {
                    "run": run.index,
                    "variant": run.variant.name,
                    "seed": run.seed,
                    "state": self.state(run),
                    "params_M": round(profile.params / 1e6, 3),
                    "MMACs": round(profile.macs / 1e6, 2),
                    **{f"{part}_MMACs": round(macs / 1e6, 2) for part, (_, macs) in profile.parts.items()},
                    "epochs": profile.epochs,
                    "est_time": estimate,
                }
            )
        title = f"suite {self.spec.name}: {len(self.runs)} of {len(self.all_runs)} runs, {len(to_do)} to do"
        title += f" -> {self.suite_dir}"
        if total:
            title += f"; estimated training time {format_seconds(total)} (plus start-up and testing per run)"
        render_table(rows, title=title, console=self.console)

    def _images_per_epoch(self) -> int | None:
        """Training + validation images per epoch of the base data (validation counted at a third of the cost)."""
        try:
            data = self.launcher.build(self.configs[self.runs[0].key], meta=True).data
            data.setup("fit")
        except Exception as err:  # the plan still prints; only the estimate is missing
            self.console.print(f"[yellow]no time estimate: the data could not be set up ({one_line(err)})[/]")
            return None
        return len(data.train_set) + len(data.val_set) // 3

    def _measured_speed(self) -> float | None:
        """Seconds per (MAC x image) of training here: from this suite's finished runs, else a short timing."""
        rates = []
        for run in self.all_runs:
            result = run.run_dir(self.suite_dir).read_result()
            if result and result.ok and result.train_img_s and result.macs:
                rates.append(1.0 / (result.train_img_s * result.macs))
        if rates:
            return statistics.median(rates)
        reference = next(r for r in self.all_runs if r.variant.name == self.spec.reference)
        try:
            module = self.launcher.build(self.configs[reference.key], meta=False).module
        except Exception:
            return None
        profile = self.profile(reference)
        x = torch.randn(min(profile.batch_size, 32), profile.in_chans, profile.img_size, profile.img_size)
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-6)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            module.network()(x).mean().backward()  # the cost of a training step; the loss is a small part of it
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            timings.append(time.perf_counter() - start)
        return min(timings[1:]) / len(x) / profile.macs

    # --- running ------------------------------------------------------------------------------------------------------
    def run(self) -> int:
        for run in self.runs:
            self.profile(run)  # every selected variant parses and builds before anything trains
        self.check_changed()
        if self.spec.dry_run:
            self.print_plan()
            return 0
        check_writable_dir(self.suite_dir, key="ablation.output_dir")
        if self.leader and not self.worker:
            metric = "test_" + self.profile(self.runs[0]).monitor.partition("/")[2]  # the test twin of the monitor
            write_json(self.suite_dir / "suite.json", {**asdict(self.spec), "metric": metric})  # what reports need
        if not self.worker:
            self._say_note()
        workers = self.worker_count()
        if workers > 1 and not self.worker:
            return self.run_workers(workers)
        progress = SuiteProgress(self.spec.name, total=len(self.runs))
        try:
            with interrupt_on_signals():
                for run in self.runs:
                    progress.variant, progress.seed, progress.run_fraction = run.variant.name, run.seed, 0.0
                    self.execute(run, progress)
                    raise_if_interrupted()  # a signal whose exception was lost between runs
                    progress.done += 1
                    if self.status:
                        progress.variant, progress.stage, progress.run_fraction = "", "", 0.0
                        publish(progress, self.status)  # between runs: nothing in flight
        except Interrupted as stop:
            message = f"suite {self.spec.name} interrupted ({stop}); run the same command again to resume"
            self.console.print(f"[bold red]{message}[/]", highlight=False)
            return 128 + stop.signum
        if not self.worker:
            self.summary()
        return 0

    # --- workers ----------------------------------------------------------------------------------------------------
    def worker_count(self) -> int:
        """``ablation.workers`` for this machine, never more than the runs left to do."""
        pending = sum(self._to_do(run) for run in self.runs)
        trainer = self.configs[self.runs[0].key].get("trainer") or {}
        distributed = any(isinstance(trainer.get(k), int) and trainer.get(k) > 1 for k in ("devices", "num_nodes"))
        if self.spec.workers == "auto":
            gpus = torch.cuda.device_count()
            wanted = 1 if distributed else gpus if gpus else os.cpu_count() or 1
        else:
            wanted = self.spec.workers
            if wanted > 1 and distributed:
                raise ValueError(
                    "ablation.workers runs whole runs side by side on one machine; this suite's runs are distributed "
                    f"(trainer.devices {trainer.get('devices')}, num_nodes {trainer.get('num_nodes')}): use 1"
                )
        return max(1, min(wanted, pending))

    def run_workers(self, count: int) -> int:
        """Run the suite in ``count`` worker processes, each this same command with its share of the machine, taking
        runs through the run locks; draw their progress; on SIGTERM / SIGINT stop them all (each saves its run)."""
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        gpus = torch.cuda.device_count()
        threads = max(1, (os.cpu_count() or 1) // count)
        command = [sys.executable, "-m", "hornet.cli", *sys.argv[1:]]
        processes, status_files = [], []
        for k in range(1, count + 1):
            env = {**os.environ, WORKER_ENV: f"{k}/{count}", "OMP_NUM_THREADS": str(threads)}
            if gpus > 1:
                env["CUDA_VISIBLE_DEVICES"] = str((k - 1) % gpus)
            status_files.append(self.workers_dir / f"worker{k}.json")
            status_files[-1].unlink(missing_ok=True)
            log = (self.workers_dir / f"worker{k}.log").open("w")
            # a session of its own: a Ctrl-C in the terminal reaches this process only, which stops the workers once
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True))
        where = f"{gpus} GPUs" if gpus > 1 else f"{threads} CPU thread{'s' * (threads > 1)} each"
        self.console.print(
            f"suite {self.spec.name}: {count} workers ({where}), logs in {self.workers_dir}",
            highlight=False,
            soft_wrap=True,
        )
        todo = [run for run in self.runs if self._to_do(run)]
        reported = {run.key: self._finished(run) for run in todo}
        display = WorkersDisplay(self.spec.name, len(todo), status_files, self.console)
        try:
            with interrupt_on_signals(), display:
                while any(p.poll() is None for p in processes):
                    time.sleep(0.5)
                    raise_if_interrupted()
                    self._report_finished(todo, reported, display)
                self._report_finished(todo, reported, display)
        except Interrupted as stop:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)  # each worker saves its run's checkpoint and marks it
            for process in processes:
                process.wait()
            message = f"suite {self.spec.name} interrupted ({stop}); run the same command again to resume"
            self.console.print(f"[bold red]{message}[/]", highlight=False)
            return 128 + stop.signum
        failed = [(k + 1, p.returncode) for k, p in enumerate(processes) if p.returncode]
        self.summary()
        if failed:
            self.console.print(f"[red]suite {self.spec.name}: workers {failed} (number, exit status) did not finish; "
                               f"see {self.workers_dir}[/]")  # fmt: skip
            return max(status for _, status in failed)
        return 0

    def _finished(self, run: AblationRun) -> float | None:
        """When the run's result was last written (None: no result)."""
        path = run.run_dir(self.suite_dir).path / "result.json"
        return path.stat().st_mtime if path.is_file() else None

    def _report_finished(self, todo: list[AblationRun], reported: dict, display: WorkersDisplay) -> None:
        """Print the line of every run whose result appeared since the last look, and redraw."""
        for run in todo:
            finished = self._finished(run)
            if finished is not None and finished != reported[run.key]:
                reported[run.key] = finished
                result = run.run_dir(self.suite_dir).read_result()
                display.print(f"suite {self.spec.name}: {run.key} {self._outcome(result)}")
        display.update(sum(not self._to_do(run) for run in todo))

    def _say(self, run: AblationRun, text: str) -> None:
        self.console.print(f"suite {self.spec.name}: {run.key} {text}", highlight=False, soft_wrap=True)

    def execute(self, run: AblationRun, progress: SuiteProgress) -> None:
        run_dir = run.run_dir(self.suite_dir)
        if not self._to_do(run):
            self._say(run, f"already {self.state(run)}, skipped")
            return
        if not self.leader:  # same decisions as rank 0 (same files), no writes: rank 0 records the run
            self.launcher.fit_and_test(self.configs[run.key], run_dir, run_dir.newest_checkpoint(), progress, None)
            return
        lock = RunLock(run_dir)
        if not lock.acquire():
            if not self.worker:  # workers of one suite pass each other's runs by all the time: no news
                self._say(run, f"is running in {lock.holder()}, skipped")
            return
        config = self.configs[run.key]
        digest = config_hash(config)
        try:
            if not self._to_do(run):  # again, under the lock: another job may have finished it meanwhile
                self._say(run, "finished elsewhere, skipped")
                return
            state = self.state(run)
            previous = run_dir.read_result()
            hash_file = run_dir.path / "config_hash"
            started_with = hash_file.read_text().strip() if hash_file.is_file() else None
            if state in ("changed", "failed") or (started_with is not None and started_with != digest):
                self._wipe(run_dir)  # a changed config or a retried failure starts from scratch
                previous = None
            write_text(hash_file, digest + "\n")
            resume_from = run_dir.newest_checkpoint()
            wall_before = previous.wall_s or 0.0 if previous else 0.0
            result = self._new_result(run, digest)
            start = time.monotonic()
            try:
                measured = self.launcher.fit_and_test(config, run_dir, resume_from, progress, self.status)
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
                rebuild_results(self.suite_dir, self.order)
                self._say(run, self._outcome(result))
                if self.spec.publish_dir:
                    self._publish()
        finally:
            lock.release()

    def _publish(self) -> None:
        """Copy the suite's small files to ``ablation.publish_dir``; a failure is reported, the run stands."""
        try:
            with results_lock(self.suite_dir):  # one publisher at a time among the suite's workers
                published = publish_suite(self.suite_dir, self.spec.publish_dir)
            self.console.print(f"suite {self.spec.name}: {published.line()}", highlight=False)
        except (OSError, ValueError) as err:
            self.console.print(f"[yellow]suite {self.spec.name}: not published: {one_line(err)}[/]", highlight=False)

    @staticmethod
    def _outcome(result: RunResult) -> str:
        """One line per run: its status, its test scores, its time."""
        scores = [f"{k} {100 * v:.2f}%" for k, v in result.scores.items() if k.startswith("test_") and v is not None]
        parts = [result.status if not result.ok else "ok", *scores, f"{result.wall_s:.0f} s"]
        return ", ".join(parts)

    @staticmethod
    def _wipe(run_dir: RunDir) -> None:
        for path in run_dir.path.iterdir():
            if path.name == ".lock":
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def _new_result(self, run: AblationRun, digest: str) -> RunResult:
        profile = self.profiles[run.variant.name]
        return RunResult(
            suite=self.spec.name,
            variant=run.variant.name,
            seed=run.seed,
            overrides=json.dumps(run.variant.overrides, sort_keys=True),
            config_hash=digest,
            commit=git_commit(),
            params=profile.params,
            macs=int(profile.macs),
            scores=part_scores(profile),
        )

    def summary(self) -> None:
        rows = []
        for run in self.runs:
            result = run.run_dir(self.suite_dir).read_result()
            rows.append(
                {
                    "variant": run.variant.name,
                    "seed": run.seed,
                    "status": result.status if result else "not run (locked elsewhere)",
                    **{k: "-" if v is None else round(v, 4) for k, v in (result.scores if result else {}).items()},
                    "wall_s": result.wall_s if result else "-",
                }
            )
        columns = dict.fromkeys(key for row in rows for key in row)
        rows = [{c: row.get(c, "-") for c in columns} for row in rows]
        render_table(rows, title=f"suite {self.spec.name}: {self.suite_dir / 'results.csv'}", console=self.console)
        self._say_note()

    def _say_note(self) -> None:
        """The suite's ``ablation.note`` (e.g. that it is a smoke check), at its start and under its summary."""
        if self.spec.note:
            self.console.print(f"suite {self.spec.name}: {self.spec.note}", highlight=False)

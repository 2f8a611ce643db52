"""Run a suite: every selected variant x seed as `hornet fit` then `hornet test`, in this process, resumably.

A run is skipped when its result.json says ok (or failed, unless ``retry_failed``) with the same config hash,
resumed from its newest checkpoint when it was interrupted or killed, and started afresh otherwise. A finished run
whose config changed is an error unless ``rerun_changed``. SIGTERM / SIGINT stop the suite: the current run is
recorded as interrupted (Lightning's on-exception checkpoint keeps its progress) and the process exits 143 / 130.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import shutil
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from rich.console import Console

from hornet.ablation.progress import SuiteProgress, format_seconds
from hornet.ablation.spec import AblationConfig, AblationRun, config_hash, plan_runs, select_runs, variant_config
from hornet.ablation.store import (
    RunLock,
    newest_checkpoint,
    read_result,
    rebuild_results,
    write_result,
)
from hornet.analysis.benchmark import inference_img_per_s, peak_rss_mb, reset_peak_rss
from hornet.analysis.complexity import count_complexity
from hornet.analysis.report import render_table
from hornet.cli import Interrupted, interrupt_on_signals, one_line
from hornet.files import check_writable_dir, write_json, write_text

__all__ = ["SuiteRunner", "VariantProfile", "is_leader"]


@dataclass(frozen=True)
class VariantProfile:
    """What a variant builds to, counted on the meta device."""

    params: int
    macs: float
    epochs: int
    img_size: int
    in_chans: int
    batch_size: int


def is_leader() -> bool:
    """Whether this process is global rank 0 of its job (the others follow the same runs without writing)."""
    return all(int(os.environ.get(key, 0)) == 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class SuiteRunner:
    """Plan, check and run one ablation suite. ``parser`` is the `hornet fit` parser, used to validate variants."""

    def __init__(self, spec: AblationConfig, base_config: dict, parser: ArgumentParser, *, console: Console) -> None:
        self.spec = spec
        self.parser = parser
        self.console = console
        self.suite_dir = spec.suite_dir
        self.all_runs = plan_runs(spec)
        self.runs = select_runs(self.all_runs, spec.only)
        self.configs = {run.key: variant_config(base_config, run.variant, run.seed) for run in self.all_runs}
        self.order = [(run.variant.name, run.seed) for run in self.all_runs]
        self.profiles: dict[str, VariantProfile] = {}
        self.leader = is_leader()  # ranks > 0 of a multi-process run train alongside rank 0 but take no locks

    # --- checks before anything runs ------------------------------------------------------------------------------
    def profile(self, run: AblationRun) -> VariantProfile:
        """Parse the variant's config like a hand-written one and build it on the meta device (errors surface here)."""
        from hornet.training import check_config

        name = run.variant.name
        if name not in self.profiles:
            config = self.configs[run.key]
            try:
                namespace = self.parser.parse_object(config)
                check_config(namespace)
                with torch.device("meta"):
                    init = self.parser.instantiate_classes(namespace)
            except Exception as err:
                raise ValueError(f"ablation variant {name!r}: {one_line(err)}") from None
            module, data = init.model, init.data
            complexity = count_complexity(module.backbone, data.img_size, in_chans=data.in_chans)
            self.profiles[name] = VariantProfile(
                params=complexity.params,
                macs=complexity.macs,
                epochs=int(namespace.trainer.max_epochs or 0),
                img_size=data.img_size,
                in_chans=data.in_chans,
                batch_size=data.batch_size,
            )
        return self.profiles[name]

    def state(self, run: AblationRun) -> str:
        """done / failed / changed / interrupted / pending, from the run's result.json and config hash."""
        result = read_result(run.run_dir(self.suite_dir))
        if result is None:
            return "pending"
        if result.get("config_hash") != config_hash(self.configs[run.key]):
            return "changed"
        status = str(result.get("status", ""))
        if status == "ok":
            return "done"
        return "failed" if status.startswith("failed") else "interrupted"

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
        rows, total = [], 0.0
        for run in self.runs:
            profile = self.profile(run)
            estimate = "-"
            images = self._images_per_epoch() if seconds_per_mac_image is not None else None
            if images is not None and profile.epochs:
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
                    "epochs": profile.epochs,
                    "est_time": estimate,
                }
            )
        title = f"suite {self.spec.name}: {len(self.runs)} of {len(self.all_runs)} runs -> {self.suite_dir}"
        if total:
            title += f"; estimated training time {format_seconds(total)} (plus start-up and testing per run)"
        render_table(rows, title=title, console=self.console)

    def _images_per_epoch(self) -> int | None:
        """Training + validation images per epoch of the base data (validation counted at a third of the cost)."""
        if not hasattr(self, "_images"):
            self._images = None
            try:
                init = self.parser.instantiate_classes(self.parser.parse_object(self.configs[self.runs[0].key]))
                init.data.setup("fit")
                self._images = len(init.data.train_set) + len(init.data.val_set) // 3
            except Exception as err:  # the plan still prints; only the estimate is missing
                self.console.print(f"[yellow]no time estimate: the data could not be set up ({err})[/]")
        return self._images

    def _measured_speed(self) -> float | None:
        """Seconds per (MAC x image) of training here: from this suite's finished runs, else a short timing."""
        rates = []
        for run in self.all_runs:
            result = read_result(run.run_dir(self.suite_dir))
            if result and result.get("status") == "ok" and result.get("train_img_s") and result.get("macs"):
                rates.append(1.0 / (float(result["train_img_s"]) * float(result["macs"])))
        if rates:
            return statistics.median(rates)
        reference = next(r for r in self.all_runs if r.variant.name == self.spec.reference)
        try:
            init = self.parser.instantiate_classes(self.parser.parse_object(self.configs[reference.key]))
        except Exception:
            return None
        profile = self.profile(reference)
        module = init.model
        x = torch.randn(min(profile.batch_size, 32), profile.in_chans, profile.img_size, profile.img_size)
        y = torch.zeros(len(x), dtype=torch.long)
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-6)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            torch.nn.functional.cross_entropy(module(x), y).backward()
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
        if self.leader:
            write_json(self.suite_dir / "suite.json", asdict(self.spec))  # what the report needs: reference, variants
        progress = SuiteProgress(self.spec.name, total=len(self.runs))
        try:
            with interrupt_on_signals():
                for run in self.runs:
                    progress.variant, progress.seed, progress.run_fraction = run.variant.name, run.seed, 0.0
                    self.execute(run, progress)
                    progress.done += 1
        except Interrupted as stop:
            message = f"suite {self.spec.name} interrupted ({stop}); run the same command again to resume"
            self.console.print(f"[bold red]{message}[/]", highlight=False)
            return 128 + stop.signum
        self.summary()
        return 0

    def execute(self, run: AblationRun, progress: SuiteProgress) -> None:
        run_dir = run.run_dir(self.suite_dir)
        state = self.state(run)
        if state == "done" or (state == "failed" and not self.spec.retry_failed):
            self.console.print(f"suite {self.spec.name}: {run.key} already {state}, skipped", highlight=False)
            return
        if not self.leader:  # same decisions as rank 0 (same files), no writes: rank 0 records the run
            self._fit_and_test(run, self.configs[run.key], newest_checkpoint(run_dir), progress)
            return
        lock = RunLock(run_dir)
        if not lock.acquire():
            self.console.print(f"suite {self.spec.name}: {run.key} is running in {lock.holder()}, skipped")
            return
        config = self.configs[run.key]
        digest = config_hash(config)
        try:
            state = self.state(run)  # again, under the lock: another job may have finished it meanwhile
            if state == "done" or (state == "failed" and not self.spec.retry_failed):
                self.console.print(f"suite {self.spec.name}: {run.key} finished elsewhere, skipped", highlight=False)
                return
            previous = read_result(run_dir)
            hash_file = run_dir / "config_hash"
            started_with = hash_file.read_text().strip() if hash_file.is_file() else None
            if state in ("changed", "failed") or (started_with is not None and started_with != digest):
                self._wipe(run_dir)  # a changed config or a retried failure starts from scratch
                previous = None
            write_text(run_dir / "config_hash", digest + "\n")
            resume_from = newest_checkpoint(run_dir)
            wall_before = float(previous.get("wall_s") or 0) if previous else 0.0
            row = self._row(run, digest)
            start = time.monotonic()
            try:
                row.update(self._fit_and_test(run, config, resume_from, progress))
                row["status"] = "ok"
            except Interrupted:
                row["status"] = "interrupted"
                raise
            except Exception as err:
                row["status"] = f"failed: {type(err).__name__}: {one_line(err)[:300]}"
                self.console.print(f"[red]suite {self.spec.name}: {run.key} {row['status']}[/]", highlight=False)
            finally:
                gc.collect()  # the run's trainer, model and data sit in reference cycles; free them before the next
                row["wall_s"] = round(wall_before + time.monotonic() - start, 1)
                write_result(run_dir, row)
                rebuild_results(self.suite_dir, self.order)
        finally:
            lock.release()

    @staticmethod
    def _wipe(run_dir: Path) -> None:
        for path in run_dir.iterdir():
            if path.name == ".lock":
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def _row(self, run: AblationRun, digest: str) -> dict:
        from hornet.training import git_commit

        profile = self.profiles[run.variant.name]
        return {
            "suite": self.spec.name,
            "variant": run.variant.name,
            "seed": run.seed,
            "overrides": json.dumps(run.variant.overrides, sort_keys=True),
            "config_hash": digest,
            "commit": git_commit(),
            "params": profile.params,
            "macs": int(profile.macs),
        }

    def _fit_and_test(self, run: AblationRun, config: dict, resume_from: Path | None, progress: SuiteProgress) -> dict:
        from hornet.training import HornetCLI

        run_dir = run.run_dir(self.suite_dir)
        common = ["--config", yaml.safe_dump(config, sort_keys=False), "--runs_dir", str(run_dir.parent)]
        common += ["--run_name", run_dir.name]
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        progress.stage = "fit" + (" (resumed)" if resume_from else "")
        resume = ["--ckpt_path", str(resume_from)] if resume_from else []
        # each run is parsed from its own arguments; sys.argv stays the suite's command, which the ranks of a
        # distributed run re-execute (so Lightning's warning about args beside sys.argv does not apply)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        fit = HornetCLI(["fit", *common, *resume], suite_progress=progress)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
        best = fit.trainer.checkpoint_callback.best_model_score
        epochs = fit.trainer.current_epoch
        progress.stage, progress.run_fraction = "test", 0.95
        test = HornetCLI(["test", *common], suite_progress=progress)
        metrics = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
        profile = self.profiles[run.variant.name]
        device = test.trainer.strategy.root_device
        backbone = test.model.backbone.to(device)
        x = torch.randn(profile.batch_size, profile.in_chans, profile.img_size, profile.img_size, device=device)
        log = self._log(run_dir / "metrics.csv")
        speeds = fit.model.train_img_s[2:] or fit.model.train_img_s  # past the first batches' warm-up
        return {
            "infer_img_s": round(inference_img_per_s(backbone, x), 1),
            "train_img_s": round(statistics.median(speeds), 1) if speeds else None,
            "peak_mem_mb": round(peak, 1) if peak is not None else None,
            "best_val_top1": round(float(best), 6) if best is not None else None,
            "test_top1": _rounded(metrics.get("test/top1")),
            "test_top5": _rounded(metrics.get("test/top5")),
            "best_val_top1_ema": _rounded(max(log["val/top1_ema"])) if log.get("val/top1_ema") else None,
            "test_top1_ema": _rounded(metrics.get("test/top1_ema")),
            "test_top5_ema": _rounded(metrics.get("test/top5_ema")),
            "epochs": epochs,
        }

    @staticmethod
    def _log(path: Path) -> dict[str, list[float]]:
        """The numeric columns of a run's metrics.csv."""
        columns: dict[str, list[float]] = {}
        with path.open() as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    if value not in ("", None):
                        columns.setdefault(key, []).append(float(value))
        return columns

    def summary(self) -> None:
        rows = []
        for run in self.runs:
            result = read_result(run.run_dir(self.suite_dir)) or {}
            rows.append(
                {
                    "variant": run.variant.name,
                    "seed": run.seed,
                    "status": result.get("status", "not run (locked elsewhere)"),
                    "test_top1": result.get("test_top1", "-"),
                    "best_val_top1": result.get("best_val_top1", "-"),
                    "wall_s": result.get("wall_s", "-"),
                }
            )
        render_table(rows, title=f"suite {self.spec.name}: {self.suite_dir / 'results.csv'}", console=self.console)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)

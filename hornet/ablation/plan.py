"""What a suite will do: its runs, each run's resolved config and hash, what each variant builds to, the state each
run is in, and the plan a dry run prints (with its time estimate).

How a run is resolved, built and trained is handed in (a ``RunLauncher``; hornet.launch.SuiteLauncher), so the suite
code knows nothing of the CLI or of how a Trainer is made.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console

from hornet.ablation.progress import SuiteProgress, format_seconds
from hornet.ablation.spec import AblationConfig, AblationRun, plan_runs, select_runs, variant_config
from hornet.analysis.measure.complexity import count_complexity
from hornet.analysis.stats.report import render_table
from hornet.errors import one_line
from hornet.runs import DEFAULT_RUNS_DIR, RunResult, config_hash

__all__ = ["BuiltRun", "RunLauncher", "SuitePlan", "VariantProfile", "part_scores", "run_state"]


@dataclass(frozen=True)
class BuiltRun:
    """What a run's config builds to: the LightningModule (a hornet.lit.Task), the DataModule, the epochs it trains
    and the devices (processes) it takes on a machine."""

    module: Any
    data: Any
    max_epochs: int
    devices: int = 1


class RunLauncher(Protocol):
    """How a suite resolves, builds and trains one run (hornet.launch.SuiteLauncher)."""

    def resolve(self, config: dict) -> dict:
        """``config`` parsed and checked like a hand-written one, with every key and default (bad input: ValueError)."""

    def build(self, config: dict, *, meta: bool) -> BuiltRun:
        """Build ``config`` (on the meta device if ``meta``); bad input raises ValueError."""

    def fit_and_test(
        self, config: dict, run: Any, resume_from: Path | None, progress: SuiteProgress, status: Path | None
    ) -> dict[str, Any]:
        """Fit ``config`` into the RunDir ``run`` (resuming from ``resume_from``), test its best checkpoint, and return
        what was measured: RunResult fields (``scores``, ``train_img_s``, ``infer_img_s``, ``peak_mem_mb``,
        ``epochs``). ``progress`` follows the run; in a worker process ``status`` is the file to publish it to."""


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
    devices: int  # processes a run takes on one machine


def part_scores(profile: VariantProfile) -> dict[str, float]:
    """results.csv columns of the network's parts: ``<part>_params`` and ``<part>_macs`` (per image)."""
    return {f"{part}_{key}": value for part, (params, macs) in profile.parts.items()
            for key, value in (("params", params), ("macs", int(macs)))}  # fmt: skip


def run_state(result: RunResult | None, digest: str) -> str:
    """done / failed / changed / interrupted / pending, from a run's result and its config's hash."""
    if result is None:
        return "pending"
    if result.config_hash != digest:
        return "changed"
    if result.ok:
        return "done"
    return "failed" if result.status.startswith("failed") else "interrupted"


class SuitePlan:
    """The runs of a suite (``spec`` over the resolved ``base_config``) and what is known of them before they run."""

    def __init__(self, spec: AblationConfig, base_config: dict, launcher: RunLauncher) -> None:
        self.spec = spec
        self.launcher = launcher
        self.suite_dir = spec.suite_dir(base_config.get("runs_dir") or DEFAULT_RUNS_DIR)
        self.all_runs = plan_runs(spec)
        self.runs = select_runs(self.all_runs, spec.only)
        self.order = [(run.variant.name, run.seed) for run in self.all_runs]
        self.configs: dict[str, dict] = {}
        for run in self.runs:
            try:
                self.configs[run.key] = launcher.resolve(variant_config(base_config, run.variant, run.seed))
            except Exception as err:
                raise ValueError(f"ablation variant {run.variant.name!r}: {one_line(err)}") from None
        self.hashes = {key: config_hash(config) for key, config in self.configs.items()}
        self.profiles: dict[str, VariantProfile] = {}

    # --- what each variant builds to ---------------------------------------------------------------------------------
    def profile(self, run: AblationRun) -> VariantProfile:
        """Build the variant on the meta device (so a bad variant stops the suite before anything trains)."""
        name = run.variant.name
        if name not in self.profiles:
            try:
                built = self.launcher.build(self.configs[run.key], meta=True)
            except Exception as err:
                raise ValueError(f"ablation variant {name!r}: {one_line(err)}") from None
            data, module = built.data, built.module
            complexity = count_complexity(
                module.network(), data.img_size, in_chans=data.in_chans, parts=module.network_parts
            )
            self.profiles[name] = VariantProfile(
                params=complexity.params, macs=complexity.macs, parts=complexity.parts, monitor=module.monitor,
                epochs=built.max_epochs, img_size=data.img_size, in_chans=data.in_chans, batch_size=data.batch_size,
                devices=built.devices,
            )  # fmt: skip
        return self.profiles[name]

    # --- where each run stands ------------------------------------------------------------------------------------
    def state(self, run: AblationRun, result: RunResult | None = None) -> str:
        """The run's state; ``result`` when it was just read (under the run's lock), else read now."""
        if result is None:
            result = run.run_dir(self.suite_dir).read_result()
        return run_state(result, self.hashes[run.key])

    def states(self) -> dict[str, str]:
        """Every selected run's state, each result read once."""
        return {run.key: self.state(run) for run in self.runs}

    def to_do(self, state: str) -> bool:
        """Whether running the suite now would (re)run a run in ``state``: not finished, or failed with
        ``retry_failed``."""
        return state not in ("done", "failed") or (state == "failed" and self.spec.retry_failed)

    def check_changed(self, states: dict[str, str]) -> None:
        changed = [key for key, state in states.items() if state == "changed"]
        if changed and not self.spec.rerun_changed:
            raise ValueError(
                f"finished runs whose config changed since they ran: {', '.join(changed)} (in {self.suite_dir}); "
                "pass --ablation.rerun_changed true to run them again, or restore the config"
            )

    # --- the plan ---------------------------------------------------------------------------------------------------
    def print_plan(self, states: dict[str, str], console: Console) -> None:
        seconds_per_mac_image = self._measured_speed()
        images = self._images_per_epoch(console) if seconds_per_mac_image is not None else None
        rows, total = [], 0.0
        to_do = [run for run in self.runs if self.to_do(states[run.key])]
        for run in self.runs:
            profile = self.profile(run)
            estimate = "-"
            if images is not None and profile.epochs and run in to_do:
                seconds = seconds_per_mac_image * profile.macs * images * profile.epochs
                total += seconds
                estimate = format_seconds(seconds)
            rows.append({
                "run": run.index, "variant": run.variant.name, "seed": run.seed, "state": states[run.key],
                "params_M": round(profile.params / 1e6, 3), "MMACs": round(profile.macs / 1e6, 2),
                **{f"{part}_MMACs": round(macs / 1e6, 2) for part, (_, macs) in profile.parts.items()},
                "epochs": profile.epochs, "est_time": estimate,
            })  # fmt: skip
        title = f"suite {self.spec.name}: {len(self.runs)} of {len(self.all_runs)} runs, {len(to_do)} to do"
        title += f" -> {self.suite_dir}"
        if total:
            title += f"; estimated training time {format_seconds(total)} (plus start-up and testing per run)"
        render_table(rows, title=title, console=console)

    def _images_per_epoch(self, console: Console) -> int | None:
        """Training + validation images per epoch of the base data (validation counted at a third of the cost)."""
        try:
            data = self.launcher.build(self.configs[self.runs[0].key], meta=True).data
            data.setup("fit")
        except Exception as err:  # the plan still prints; only the estimate is missing
            console.print(f"[yellow]no time estimate: the data could not be set up ({one_line(err)})[/]")
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
        reference = next((r for r in self.runs if r.variant.name == self.spec.reference), self.runs[0])
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

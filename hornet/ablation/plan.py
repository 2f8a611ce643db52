"""What a suite will do: its runs, each run's resolved config and hash, what each variant builds to, the state each
run is in, and the plan a dry run prints (with its time estimate).

How a run is resolved, built and trained is handed in (a ``RunLauncher``; hornet.launch.SuiteLauncher), so the suite
code knows nothing of the CLI or of how a Trainer is made.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from hornet.ablation.estimate import RunCost, limited, measure_run_cost, suite_wall_time
from hornet.ablation.progress import SuiteProgress, format_seconds
from hornet.ablation.spec import AblationConfig, AblationRun, plan_runs, select_runs, variant_config
from hornet.ablation.workers import threads_of, worker_count
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
        """The runs, what each builds to, and (``ablation.estimate``) the estimated wall time of what is to do."""
        to_do = [run for run in self.runs if self.to_do(states[run.key])]
        seconds = self._estimate(to_do, console) if self.spec.estimate and to_do else {}
        rows = []
        for run in self.runs:
            profile = self.profile(run)
            rows.append({
                "run": run.index, "variant": run.variant.name, "seed": run.seed, "state": states[run.key],
                "params_M": round(profile.params / 1e6, 3), "MMACs": round(profile.macs / 1e6, 2),
                **{f"{part}_MMACs": round(macs / 1e6, 2) for part, (_, macs) in profile.parts.items()},
                "epochs": profile.epochs, "est_time": format_seconds(seconds[run.key]) if run.key in seconds else "-",
            })  # fmt: skip
        title = f"suite {self.spec.name}: {len(self.runs)} of {len(self.all_runs)} runs, {len(to_do)} to do"
        title += f" -> {self.suite_dir}"
        if seconds:
            workers = self.workers(len(to_do))
            wall = suite_wall_time([seconds[run.key] for run in to_do], workers)
            title += f"; estimated wall time {format_seconds(wall)} ({workers} worker{'s' * (workers > 1)})"
        render_table(rows, title=title, console=console)

    def workers(self, pending: int) -> int:
        """How many workers the suite will run ``pending`` runs with."""
        return worker_count(self.spec.workers, pending, self.profile(self.runs[0]).devices)

    def _estimate(self, to_do: list[AblationRun], console: Console) -> dict[str, float]:
        """Seconds per run to do: a variant's finished runs' own wall time, else a short real run's measured cost
        (hornet.ablation.estimate) over the run's batches. Empty when the data cannot be set up."""
        try:
            counts = self._batches_per_stage()
        except Exception as err:  # the plan still prints; only the estimate is missing
            console.print(f"[yellow]no time estimate: the data could not be set up ({one_line(err)})[/]")
            return {}
        finished: dict[str, list[float]] = {}
        for run in self.all_runs:
            result = run.run_dir(self.suite_dir).read_result()
            if result and result.ok and result.wall_s:
                finished.setdefault(run.variant.name, []).append(result.wall_s)
        threads = threads_of(self.workers(len(to_do)), self.profile(to_do[0]).devices)
        costs: dict[tuple, RunCost] = {}
        seconds = {}
        for run in to_do:
            if run.variant.name in finished:
                seconds[run.key] = statistics.median(finished[run.variant.name])
                continue
            profile = self.profile(run)
            shape = (profile.params, profile.macs, profile.batch_size, profile.img_size)  # variants that cost alike
            if shape not in costs:
                console.print(f"suite {self.spec.name}: timing a short run of {run.variant.name} ({threads} thread"
                              f"{'s' * (threads > 1)})", highlight=False)  # fmt: skip
                costs[shape] = measure_run_cost(self.launcher, self.configs[run.key], threads=threads)
            trainer = self.configs[run.key].get("trainer") or {}
            train, val, test = (limited(n, trainer.get(f"limit_{stage}_batches"))
                                for n, stage in zip(counts, ("train", "val", "test")))  # fmt: skip
            seconds[run.key] = costs[shape].run_seconds(profile.epochs, train, val, test)
        return seconds

    def _batches_per_stage(self) -> tuple[int, int, int]:
        """Training, validation and test batches of an epoch of the base data."""
        data = self.launcher.build(self.configs[self.runs[0].key], meta=True).data
        data.setup("fit")
        train, val = len(data.train_dataloader()), len(data.val_dataloader())
        data.setup("test")
        return train, val, len(data.test_dataloader())

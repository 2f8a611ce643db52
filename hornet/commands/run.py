"""`hornet fit|validate|test|predict`: a run's config from the command line, then one run or a whole suite.

A config with an ``ablation:`` section is a suite: `hornet fit` hands it to the suite runner, which builds each run
through the same builder (hornet.launch). Otherwise the command builds one run, executes its stage and prints where
its files are and what it measured.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

from lightning.fabric.utilities.exceptions import MisconfigurationException
from rich.console import Console

from hornet.ablation import AblationConfig
from hornet.ablation.runner import SuiteRunner
from hornet.analysis.stats.report import format_metric
from hornet.config import CommandConfig, Stage, command_config
from hornet.errors import UsageError, interrupt_on_signals, one_line
from hornet.launch import Run, SuiteLauncher, build_run, execute
from hornet.quiet import RunLog, quiet_lightning

__all__ = ["run_command"]


def _describe(run: Run) -> str:
    """One line for the model being run: its name, parameters and MACs per image (the task's whole network)."""
    from hornet.analysis.measure.complexity import count_complexity

    module, data = run.module, run.data
    line = f"{module.describe()}, {sum(p.numel() for p in module.parameters()) / 1e6:.2f} M params"
    try:
        complexity = count_complexity(module.network(), data.img_size, in_chans=data.in_chans)
    except Exception:  # a network the counter cannot run at this size: the parameters alone
        return line
    return line + f", {complexity.macs / 1e6:.1f} M MACs per {data.img_size} px image"


def _report(run: Run) -> None:
    """Where the run's files are and its metrics, scores as percentages (rank 0 only)."""
    if not run.trainer.is_global_zero:
        return
    metrics = {k: float(v) for k, v in run.trainer.callback_metrics.items() if "/" in k}
    print(f"hornet {run.stage}: run directory {run.dir.path}", file=sys.stderr)
    print(f"  logs: {run.dir.metrics_file} (scores as fractions)  config: {run.dir.config_file}", file=sys.stderr)
    checkpoint = run.trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_path:
        print(f"  best checkpoint: {checkpoint.best_model_path}", file=sys.stderr)
    if metrics:
        print("  " + "  ".join(format_metric(k, v) for k, v in sorted(metrics.items())), file=sys.stderr)


def run_suite(command: CommandConfig) -> int:
    """A config with ``ablation:``: the whole suite (each run a fit and a test)."""
    spec = AblationConfig.from_dict(command.config["ablation"])
    return SuiteRunner(spec, command.config, SuiteLauncher(), console=Console(stderr=True)).run()


def run_command(stage: Stage, argv: list[str]) -> int:
    """`hornet <stage> ARGS`: the exit status of the run (or of the suite)."""
    try:
        return _run_command(stage, argv)
    except MisconfigurationException as err:  # Lightning's own checks of the config (an accelerator that is absent)
        raise UsageError(one_line(err)) from err


def _run_command(stage: Stage, argv: list[str]) -> int:
    command = command_config(argv, stage)
    if command.suite:
        if stage != "fit":
            raise UsageError(f"an ablation suite runs with `hornet fit` (it tests each run itself), not `{stage}`")
        return run_suite(command)
    if command.found is not None:
        print(f"hornet {stage}: config from {command.found}", file=sys.stderr)
    verbose = bool(command.config.get("verbose"))
    log = None if verbose else RunLog()
    with nullcontext() if verbose else quiet_lightning(log):  # Lightning's banners to <run>/lightning.log
        run = build_run(command.config, stage, log=log)
        if run.trainer.is_global_zero:
            print(f"hornet {stage}: {_describe(run)}", file=sys.stderr)
        with interrupt_on_signals():  # Lightning saves on_exception.ckpt on the way out
            execute(run)
    if stage != "predict":
        _report(run)
    return 0

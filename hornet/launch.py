"""One run, built one way: a resolved config -> trainer, LightningModule, DataModule and run directory.

``build_run`` is the only place a Trainer, a task and a DataModule are made: `hornet fit|validate|test|predict`, every
run of a suite (``SuiteLauncher``) and `hornet bench --mode fit` call it. ``execute`` runs the run's stage;
``SuiteLauncher.fit_and_test`` fits, then tests the best checkpoint on the same Trainer (as Lightning's examples do).
Lightning is used through its extension points: loggers, callbacks, a checkpoint-IO plugin.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar

from hornet.ablation.plan import BuiltRun
from hornet.ablation.progress import PublishProgress, SuiteProgress, SuiteProgressBar
from hornet.analysis.measure.benchmark import inference_img_per_s, peak_rss_mb, reset_peak_rss
from hornet.callbacks import BestValidation, SaveOnException, StopOnSignal, TrainThroughput
from hornet.checkpoints import AtomicCheckpointIO, forget_unsaved_best, read_training_checkpoint
from hornet.config import Stage, config_parser, parse_config, resolve_config, run_dir_of
from hornet.data import ImageDataModule
from hornet.data.base import resume_position
from hornet.errors import EXIT_USAGE, UsageError, exit_status, one_line
from hornet.files import check_writable_dir, write_text
from hornet.lit import Task
from hornet.loggers import run_loggers
from hornet.quiet import RunLog, quiet_lightning
from hornet.runs import BEST_PREFIX, RunDir

__all__ = ["Run", "SuiteContext", "SuiteLauncher", "build_run", "execute"]


@dataclass(frozen=True)
class SuiteContext:
    """A suite's run: its progress line, and in a worker process the file it publishes it to (no display)."""

    progress: SuiteProgress
    status: Path | None = None


@dataclass
class Run:
    """A built run: what its config made, and the checkpoint it starts from (already read and checked)."""

    stage: Stage
    config: dict
    dir: RunDir
    module: Task
    data: ImageDataModule
    trainer: Trainer
    ckpt_path: str | None = None
    log: RunLog | None = None  # Lightning's messages, for <run>/lightning.log once the run's folder exists

    @property
    def fresh_fit(self) -> bool:
        """A fit that starts the run anew: it replaces the run's checkpoints and metrics."""
        return self.stage == "fit" and self.ckpt_path is None


def slurm_requeued() -> bool:
    """True in a SLURM job started again by ``scontrol requeue`` (after preemption or SIGUSR1 near its time limit)."""
    return os.environ.get("SLURM_RESTART_COUNT", "0").strip() not in ("", "0")


def _seed(config: dict) -> None:
    """Seed as LightningCLI does (``workers=True``); ``true`` draws a seed, which the config then records."""
    seed = config.get("seed_everything")
    if seed is False:
        return
    config["seed_everything"] = seed_everything(None if seed is True else seed, workers=True)


def _start_checkpoint(stage: Stage, ckpt_path: str | None, run_dir: RunDir) -> Path | None:
    """The file a run starts from: ``last`` is the run's newest checkpoint; evaluation defaults to its best."""
    if ckpt_path in ("last", "hpc") or (stage == "fit" and ckpt_path is None and slurm_requeued()):
        newest = run_dir.newest_checkpoint()  # last.ckpt, or a newer on-exception / hpc checkpoint
        if newest is None and ckpt_path == "last":
            raise UsageError(
                f"--ckpt_path last: no {run_dir.checkpoints / 'last.ckpt'} to resume from (run `hornet fit` for this "
                "run first)"
            )
        return newest
    if stage != "fit" and ckpt_path in (None, "best"):
        best = run_dir.best_checkpoint()
        if best is None:
            raise UsageError(f"no checkpoint in {run_dir.checkpoints}: fit this run first, or pass --ckpt_path FILE")
        return best
    return Path(ckpt_path) if ckpt_path else None


def _callbacks(
    stage: Stage, module: Task, run_dir: RunDir, trainer_args: dict, suite: SuiteContext | None, verbose: bool
) -> list:
    monitor = module.monitor
    callbacks = [
        ModelCheckpoint(
            dirpath=str(run_dir.checkpoints),
            filename=BEST_PREFIX + "epoch{epoch:03d}-" + monitor.split("/")[-1] + "{" + monitor + ":.4f}",
            auto_insert_metric_name=False,
            monitor=monitor,
            mode="max",
            save_top_k=1,
        ),
        # the newest epoch, with last.ckpt linked to it (Lightning writes "last" only beside a saved checkpoint)
        ModelCheckpoint(
            dirpath=str(run_dir.checkpoints),
            filename="epoch{epoch:03d}",
            auto_insert_metric_name=False,
            monitor=None,
            save_top_k=1,
            save_last="link",
        ),
        SaveOnException(
            run_dir.checkpoints / "on_exception.ckpt",
            resume_hint=None if suite else f"--run_name {run_dir.name} --ckpt_path last",
        ),
        StopOnSignal(),
        TrainThroughput(),
        BestValidation(),
    ]
    if stage == "predict":
        callbacks.append(module.prediction_writer(run_dir.path))
    if suite is not None and suite.status is not None:  # a suite's worker: the suite's process draws its progress
        callbacks.append(PublishProgress(suite.progress, suite.status))
    elif trainer_args.get("enable_progress_bar") is not False:
        stderr = {"stderr": True}  # stdout is for results (tables, CSV)
        bar = SuiteProgressBar(suite.progress, leave=True, console_kwargs=stderr) if suite else None
        callbacks.append(bar or RichProgressBar(leave=True, console_kwargs=stderr))
    if trainer_args.get("enable_model_summary") is not False and verbose:  # else: hornet's one line (commands.run)
        callbacks.append(RichModelSummary(max_depth=1))
    return callbacks


def build_run(
    config: dict,
    stage: Stage = "fit",
    *,
    meta: bool = False,
    suite: SuiteContext | None = None,
    log: RunLog | None = None,
) -> Run:
    """Build the run of a resolved ``config`` (hornet.config) for ``stage``: parse it once, seed, instantiate the task
    and data (on the meta device with ``meta``, to count and check a suite's variants), read the checkpoint it starts
    from once, and make its Trainer. Nothing is written yet. Bad input raises ValueError / UsageError."""
    config = dict(config)
    namespace = parse_config(config)
    run_dir = run_dir_of(config)
    if stage == "fit" and not meta:
        check_writable_dir(run_dir.path, key="--runs_dir / --run_name")
    _seed(config)
    with torch.device("meta") if meta else nullcontext():
        init = config_parser().instantiate(namespace)
    module, data = init.model, init.data
    checkpoint_file = None if meta else _start_checkpoint(stage, config.get("ckpt_path"), run_dir)
    preloaded = {}
    if checkpoint_file is not None:
        checkpoint = read_training_checkpoint(checkpoint_file, module)  # the one read of it
        preloaded[str(checkpoint_file)] = checkpoint
        if stage == "fit":
            data.resume_at = resume_position(checkpoint)
            forget_unsaved_best(checkpoint)
    trainer_args = init.trainer.as_dict() if hasattr(init.trainer, "as_dict") else dict(init.trainer)
    fresh = stage == "fit" and checkpoint_file is None
    trainer_args["logger"] = run_loggers(
        run_dir.path, keep_existing=not fresh, configured=trainer_args.get("logger")
    )  # metrics.csv always, TensorBoard and any configured logger beside it; only a fresh fit starts the CSV anew
    trainer_args["default_root_dir"] = str(run_dir.path)
    if trainer_args.get("plugins") is None and "deepspeed" not in str(trainer_args.get("strategy")).lower():
        trainer_args["plugins"] = [AtomicCheckpointIO(preloaded)]
    configured = trainer_args.get("callbacks") or []
    configured = configured if isinstance(configured, list) else [configured]
    verbose = bool(config.get("verbose")) and suite is None
    trainer_args["callbacks"] = [*configured, *_callbacks(stage, module, run_dir, trainer_args, suite, verbose)]
    if not verbose:
        trainer_args["enable_model_summary"] = False  # no Lightning summary table: hornet prints one line
    if suite is not None and suite.status is not None:
        trainer_args["enable_progress_bar"] = False
    try:
        trainer = Trainer(**trainer_args)
    except MisconfigurationException as err:  # Lightning's own checks (an accelerator this machine lacks)
        raise UsageError(_trainer_problem(one_line(err), trainer_args)) from err
    return Run(stage, config, run_dir, module, data, trainer, str(checkpoint_file) if checkpoint_file else None, log)


def _trainer_problem(message: str, trainer_args: dict) -> str:
    """Lightning's message about the devices or the accelerator, with the key and a value that works here."""
    gpus = torch.cuda.device_count()
    lowered = message.lower()
    if "devices" in lowered:
        kind, count = ("GPUs", gpus) if gpus else ("CPU processes", os.cpu_count() or 1)
        return (
            f"trainer.devices {trainer_args.get('devices')}: {message} This machine has {count} {kind}: e.g. "
            "trainer.devices 1 (or auto)"
        )
    if "accelerator" in lowered or "backend" in lowered:
        works = "gpu (or auto)" if gpus else "cpu (or auto)"
        return f"trainer.accelerator {trainer_args.get('accelerator')!r}: {message} This machine takes {works}"
    return message


def _start_fit(run: Run) -> None:
    """Before a fit, on the global zero rank: a fresh fit replaces the run's checkpoints; the run directory gets its
    metadata and its config.yaml (the whole resolved config: `hornet fit --config <run>/config.yaml` repeats it)."""
    if not run.trainer.is_global_zero:
        return
    if run.fresh_fit:  # no stale checkpoint mixed in, none for Lightning to resume
        shutil.rmtree(run.dir.checkpoints, ignore_errors=True)
        for stale in run.dir.path.glob("hpc_ckpt_*.ckpt"):
            stale.unlink()
    run.dir.path.mkdir(parents=True, exist_ok=True)
    run.dir.write_meta(run.config.get("seed_everything"))
    saved = {**run.config, **dict.fromkeys(("ablation", "base", "ckpt_path")), "verbose": False}
    header = "".join(f"# {line}\n" for line in config_parser().dump_header or ())
    write_text(run.dir.config_file, header + yaml.safe_dump(saved, sort_keys=False))


def _check_trained(run: Run) -> None:
    """A fit that trained no batch is bad input (Lightning only logs it)."""
    trainer = run.trainer
    batches = trainer.num_training_batches
    if trainer.limit_train_batches == 0 or batches == 0:
        raise UsageError(
            f"the fit trained nothing: 0 training batches (trainer.limit_train_batches {trainer.limit_train_batches}, "
            f"data.batch_size {run.data.batch_size}); give more training images, a smaller batch or a larger limit"
        )


def execute(run: Run) -> None:
    """Run the run's stage. A fit rejected as bad input leaves no run directory (nor runs root) it created behind."""
    created = [path for path in (run.dir.path, *run.dir.path.parents) if not path.exists()]  # innermost first
    try:
        if run.stage == "fit":
            _start_fit(run)
        if run.log is not None and run.trainer.is_global_zero:
            run.log.attach(run.dir.path)
        if run.stage == "fit":
            run.trainer.fit(run.module, datamodule=run.data, ckpt_path=run.ckpt_path)
            _check_trained(run)
        elif run.stage == "predict":
            run.trainer.predict(run.module, datamodule=run.data, ckpt_path=run.ckpt_path, return_predictions=False)
        else:  # Lightning's table of the results only with --verbose: hornet prints them in one line
            method = getattr(run.trainer, run.stage)
            method(run.module, datamodule=run.data, ckpt_path=run.ckpt_path, verbose=bool(run.config.get("verbose")))
    except Exception as err:
        if exit_status(err) == EXIT_USAGE and created and run.trainer.is_global_zero:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise


def _callback(trainer: Trainer, kind: type):
    return next(c for c in trainer.callbacks if isinstance(c, kind))


class SuiteLauncher:
    """How a suite resolves, builds and trains its runs (hornet.ablation.runner.RunLauncher), through ``build_run``.
    A plain object, so a suite's worker processes receive it by pickling."""

    def resolve(self, config: dict) -> dict:
        return resolve_config(config)

    def build(self, config: dict, *, meta: bool) -> BuiltRun:
        with quiet_lightning():
            run = build_run(config, "fit", meta=meta)
        return BuiltRun(run.module, run.data, int(run.trainer.max_epochs or 0), run.trainer.num_devices)

    def fit_and_test(
        self, config: dict, run_dir: RunDir, resume_from: Path | None, progress: SuiteProgress, status: Path | None
    ) -> dict[str, Any]:
        config = {**config, "runs_dir": str(run_dir.path.parent), "run_name": run_dir.name}
        config["ckpt_path"] = str(resume_from) if resume_from else None
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        progress.stage = "fit" + (" (resumed)" if resume_from else "")
        with quiet_lightning():
            run = build_run(config, "fit", suite=SuiteContext(progress, status))
            execute(run)
            peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
            # what the fit measured, read before the test restores the best epoch's callback states
            best = _callback(run.trainer, BestValidation).best
            speed = _callback(run.trainer, TrainThroughput).median_img_s
            epochs = run.trainer.current_epoch
            progress.stage, progress.run_fraction = "test", 0.95
            run.trainer.test(run.module, datamodule=run.data, ckpt_path=str(run.dir.best_checkpoint()), verbose=False)
        scores = {"best_" + name.replace("/", "_"): round(value, 6) for name, value in best.items()}
        tested = {k: float(v) for k, v in run.trainer.callback_metrics.items() if k.startswith("test/")}
        summary = {k: v for k, v in tested.items() if k.count("/") == 1 and not k.endswith("/loss")}  # not per class
        scores |= {k.replace("/", "_"): round(v, 6) for k, v in sorted(summary.items())}
        device = run.trainer.strategy.root_device
        data = run.data
        x = torch.randn(data.batch_size, data.in_chans, data.img_size, data.img_size, device=device)
        return {
            "scores": scores,
            "train_img_s": round(speed, 1) if speed else None,
            "infer_img_s": round(inference_img_per_s(run.module.network().to(device), x), 1),
            "peak_mem_mb": round(peak, 1) if peak is not None else None,
            "epochs": epochs,
        }

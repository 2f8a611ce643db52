"""`hornet fit|validate|test|predict`: LightningCLI with deterministic run directories and one error contract."""

from __future__ import annotations

import csv
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO

from hornet.ablation.progress import SuiteProgress, SuiteProgressBar
from hornet.ablation.spec import AblationConfig
from hornet.ablation.store import newest_checkpoint
from hornet.cli import LIGHTNING_SUBCOMMANDS, Interrupted, UsageError, interrupt_on_signals
from hornet.data import ClassificationDataModule
from hornet.data.base import resume_position
from hornet.files import check_writable_dir, write_atomic, write_json
from hornet.lit import ClassificationModule

__all__ = [
    "DEFAULT_CONFIG", "AtomicCheckpointIO", "HornetCLI", "check_config", "check_training_checkpoint", "git_commit",
]  # fmt: skip

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "lightning_cli.yaml"
BEST_PREFIX = "best-"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_commit() -> str | None:
    """The repository's HEAD commit (None outside a git checkout)."""
    return _git("rev-parse", "HEAD") or None


def slurm_requeued() -> bool:
    """True in a SLURM job started again by ``scontrol requeue`` (after preemption or SIGUSR1 near its time limit)."""
    return os.environ.get("SLURM_RESTART_COUNT", "0").strip() not in ("", "0")


def run_metadata(seed: int | None) -> dict:
    """What reproduces a run: commit, package versions, hardware, threads, argv, seed."""
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


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` survives a resume (Lightning's writer deletes an existing file)."""

    def __init__(self, *args, keep_existing: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keep_existing = keep_existing

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        previous = path.read_text() if self.keep_existing and path.is_file() else None
        writer = super().experiment
        if previous:
            path.write_text(previous)
            writer.metrics_keys = sorted(next(csv.reader([previous.splitlines()[0]])))
        return writer


def check_yaml_files(argv: list[str]) -> None:
    """Every ``--config`` file (and the default config) must be YAML: a syntax error names the file, line and column.

    jsonargparse reports such errors without the file name; configs given inline as YAML text are left to it.
    """
    paths = [DEFAULT_CONFIG]
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            paths.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            paths.append(Path(arg.partition("=")[2]))
    for path in paths:
        try:
            if not path.is_file():
                continue
            yaml.safe_load(path.read_text())
        except OSError:
            continue  # not a file name (YAML text): parsed by jsonargparse
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            context = f" ({err.context})" if err.context else ""
            raise UsageError(f"{path}: invalid YAML{where}: {err.problem}{context}") from None
        except yaml.YAMLError as err:
            raise UsageError(f"{path}: invalid YAML: {err}") from None


def check_config(config) -> None:
    """Checks that span config sections (each class validates its own arguments); ``config`` is a parsed fit config."""
    model, batch = config["model"], config["data"]["init_args"].get("batch_size")
    if (model.get("mixup") or model.get("cutmix")) and isinstance(batch, int) and batch % 2:
        raise ValueError(f"model.mixup / model.cutmix mix pairs of images: data.batch_size must be even; got {batch}")


def check_training_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """Fail with one clear line unless ``path`` is a Lightning training checkpoint whose weights fit ``model``;
    returns the checkpoint (memory-mapped)."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        raise ValueError(f"--ckpt_path {str(path)!r} is not a PyTorch checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        keys = sorted(checkpoint)[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"--ckpt_path {str(path)!r} holds model weights ({keys}), not a training checkpoint of `hornet fit`; start "
            "from weights with model.backbone_kwargs: {pretrained: true, pretrained_cfg_overlay: {file: PATH}}"
        )
    if model is not None:
        from hornet.models.convert import describe_state_dict_mismatch

        problems = describe_state_dict_mismatch(checkpoint["state_dict"], model.state_dict())
        if problems:
            raise ValueError(f"--ckpt_path {str(path)!r} was saved from another model: {problems}")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, then renamed (Lightning's default stages them in
    the system temp dir and moves them, which is a plain copy when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda handle: torch.save(checkpoint, handle), binary=True)


class SaveRunConfig(SaveConfigCallback):
    """Lightning's config.yaml writer for fits only, and without ``ckpt_path``: the file reproduces the run from its
    start (a later `hornet test` of the run, or a resumed fit, does not replace it with its own arguments)."""

    def __init__(self, parser, config, *args, **kwargs) -> None:
        config = config.clone()
        if "ckpt_path" in config:
            config.ckpt_path = None
        super().__init__(parser, config, *args, **kwargs)

    def setup(self, trainer: Trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class SaveOnException(Callback):
    """Save the training state when fit stops on an exception or a signal, for ``--ckpt_path last`` to resume.

    Unlike Lightning's OnExceptionCheckpoint, its presence does not make a fit without ``ckpt_path`` resume. A fit
    stopped by a non-finite loss is not saved (its weights are what went wrong), and a failing save (a full disk)
    is reported without hiding the exception that stopped the fit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: Trainer, pl_module, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0 or isinstance(exception, FloatingPointError):
            return
        try:
            trainer.save_checkpoint(self.path)
        except OSError as err:
            print(f"hornet fit: could not save {self.path}: {err}", file=sys.stderr)


class HornetCLI(LightningCLI):
    """LightningCLI for ClassificationModule + any ClassificationDataModule, writing to ``runs/<run_name>/``.

    A config with an ``ablation:`` section turns ``fit`` into a whole suite (hornet.ablation); ``exit_code`` is the
    status to exit with. ``suite_progress`` is set by the suite runner for the runs it starts.
    """

    def __init__(
        self, args: list[str] | None = None, run: bool = True, suite_progress: SuiteProgress | None = None
    ) -> None:
        self.suite_progress = suite_progress
        self.exit_code: int | None = None
        check_yaml_files(list(sys.argv[1:] if args is None else args))
        parser_kwargs = {
            "parser_mode": "omegaconf+",
            "exit_on_error": False,
            # a suite hands each run its complete config: lightning_cli.yaml must not change it mid-suite
            **{
                sub: {"default_config_files": [] if suite_progress else [str(DEFAULT_CONFIG)]}
                for sub in LIGHTNING_SUBCOMMANDS
            },
        }
        super().__init__(
            ClassificationModule,
            ClassificationDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=parser_kwargs,
            args=args,
            run=run,
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the model's hyperparameters from ``--ckpt_path`` while parsing: check the file first."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            if not Path(ckpt_path).is_file():
                raise UsageError(f"--ckpt_path {ckpt_path!r}: no such checkpoint file")
            check_training_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_name", type=str | None, default=None, help="runs/<run_name>/ (default: config stem)")
        parser.add_argument("--runs_dir", type=str, default="runs", help="parent folder of the run directories")
        parser.add_argument(
            "--ablation", type=AblationConfig | None, default=None, help="run a suite of variants (see README)"
        )
        for key in ("num_classes", "in_chans", "img_size"):
            parser.link_arguments(
                "data", f"model.{key}", compute_fn=lambda dm, key=key: getattr(dm, key), apply_on="instantiate"
            )

    # --- ablation suites -------------------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        spec = self.config[self.subcommand].get("ablation") if self.subcommand else None
        if spec is None:
            if self.subcommand == "fit":  # fail before anything is built or loaded
                check_config(self.config["fit"])
                check_writable_dir(self.run_dir, key="--runs_dir / --run_name")
                if slurm_requeued() and self.config["fit"].get("ckpt_path") is None and newest_checkpoint(self.run_dir):
                    self.config["fit"]["ckpt_path"] = "last"  # a requeued job goes on from its newest checkpoint
            return
        if self.subcommand != "fit":
            raise UsageError(
                f"an ablation suite runs with `hornet fit` (it tests each run itself), not `{self.subcommand}`"
            )
        from rich.console import Console

        from hornet.ablation.runner import SuiteRunner

        parser = self._subcommand_parsers["fit"]
        spec = parser.instantiate_classes(self.config["fit"]).ablation  # the dataclass, validated
        base = yaml.safe_load(parser.dump(self.config["fit"], skip_none=False, skip_check=True))
        runner = SuiteRunner(spec, base, parser, console=Console(stderr=True))
        self.exit_code = runner.run()

    def instantiate_classes(self) -> None:
        if self.exit_code is None:
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        if self.exit_code is not None:  # a suite ran instead
            return
        if self.suite_progress is not None:  # inside a suite, whose runner handles the signals
            super()._run_subcommand(subcommand)
        else:
            try:
                with interrupt_on_signals():  # Lightning saves on_exception.ckpt on the way out
                    super()._run_subcommand(subcommand)
            except Interrupted:
                if subcommand == "fit" and self.trainer.is_global_zero:
                    print(f"hornet fit: interrupted; resume with --run_name {self.run_dir.name} --ckpt_path last",
                          file=sys.stderr)  # fmt: skip
                raise
            except FloatingPointError as err:
                raise FloatingPointError(f"run {self.run_dir}: {err}") from err
        self.exit_code = 0

    # --- run directory -----------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        config = self.config[self.subcommand]
        name = config.get("run_name")
        if not name:
            configs = [c for c in (config.get("config") or []) if c and Path(str(c)).resolve() != DEFAULT_CONFIG]
            name = Path(str(configs[-1])).stem if configs else "default"
        return Path(config.get("runs_dir") or "runs") / name

    def instantiate_trainer(self, **kwargs) -> Trainer:
        run_dir = self.run_dir
        trainer_config = self.config_init[self.subcommand]["trainer"]
        if trainer_config.get("logger") in (None, True):
            # only a fresh fit starts metrics.csv anew; resuming, validate and test append to the run's log
            kwargs["logger"] = ResumableCSVLogger(
                save_dir=str(run_dir.parent), name=run_dir.name, version="", keep_existing=not self._fresh_fit
            )
        kwargs.setdefault("default_root_dir", str(run_dir))
        if trainer_config.get("plugins") is None and "deepspeed" not in str(trainer_config.get("strategy")).lower():
            kwargs["plugins"] = [AtomicCheckpointIO()]
        callbacks = [
            ModelCheckpoint(
                dirpath=str(run_dir / "checkpoints"),
                filename=BEST_PREFIX + "epoch{epoch:03d}-top1{val/top1:.4f}",
                auto_insert_metric_name=False,
                monitor="val/top1",
                mode="max",
                save_top_k=1,
            ),
            # the newest epoch, with last.ckpt linked to it (Lightning writes "last" only beside a saved checkpoint)
            ModelCheckpoint(
                dirpath=str(run_dir / "checkpoints"),
                filename="epoch{epoch:03d}",
                auto_insert_metric_name=False,
                monitor=None,
                save_top_k=1,
                save_last="link",
            ),
            SaveOnException(run_dir / "checkpoints" / "on_exception.ckpt"),
        ]
        if trainer_config.get("enable_progress_bar") is not False:
            bar = (
                SuiteProgressBar(self.suite_progress, leave=True)
                if self.suite_progress
                else RichProgressBar(leave=True)
            )
            callbacks.append(bar)
        if trainer_config.get("enable_model_summary") is not False:
            callbacks.append(RichModelSummary(max_depth=1))
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}
        return super().instantiate_trainer(**kwargs)

    @property
    def _fresh_fit(self) -> bool:
        """A fit that starts the run anew (no --ckpt_path): it replaces the run's checkpoints and metrics."""
        return self.subcommand == "fit" and self.config[self.subcommand].get("ckpt_path") is None

    def _checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def _resolve_ckpt_path(self, *, default_best: bool) -> None:
        config = self.config_init[self.subcommand]  # what the subcommand is called with
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            path = newest_checkpoint(self.run_dir)  # last.ckpt, or a newer on-exception / hpc checkpoint
            if path is None:
                raise UsageError(
                    f"--ckpt_path last: no {self._checkpoints() / 'last.ckpt'} to resume from (run `hornet fit` for "
                    "this run first)"
                )
            config["ckpt_path"] = str(path)
        elif ckpt_path in (None, "best") and default_best:
            best = sorted(self._checkpoints().glob(BEST_PREFIX + "*.ckpt"))
            if not best:
                raise UsageError(
                    f"no checkpoint in {self._checkpoints()}: fit this run first, or pass --ckpt_path FILE"
                )
            config["ckpt_path"] = str(best[-1])
        elif ckpt_path is not None and not Path(ckpt_path).is_file():
            raise UsageError(f"--ckpt_path {ckpt_path!r}: no such checkpoint file")
        if config.get("ckpt_path") is not None:
            checkpoint = check_training_checkpoint(config["ckpt_path"], self.model)
            if self.subcommand == "fit" and isinstance(self.datamodule, ClassificationDataModule):
                self.datamodule.resume_at = resume_position(checkpoint)

    def before_fit(self) -> None:
        self._resolve_ckpt_path(default_best=False)
        if self.trainer.is_global_zero:
            if self._fresh_fit:  # a new fit of this run: no stale checkpoint mixed in, none for Lightning to resume
                shutil.rmtree(self._checkpoints(), ignore_errors=True)
                for stale in self.run_dir.glob("hpc_ckpt_*.ckpt"):
                    stale.unlink()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            meta = run_metadata(self.config[self.subcommand].get("seed_everything"))
            write_json(self.run_dir / "meta.json", meta)

    def before_validate(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def before_test(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def before_predict(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def _report(self, what: str) -> None:
        if not self.trainer.is_global_zero:
            return
        metrics = {k: round(float(v), 4) for k, v in self.trainer.callback_metrics.items() if "/" in k}
        print(f"hornet {what}: run directory {self.run_dir}", file=sys.stderr)
        print(f"  logs: {self.run_dir / 'metrics.csv'}  config: {self.run_dir / 'config.yaml'}", file=sys.stderr)
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            print(f"  best checkpoint: {checkpoint.best_model_path}", file=sys.stderr)
        if metrics:
            print("  " + "  ".join(f"{k}={v}" for k, v in sorted(metrics.items())), file=sys.stderr)

    def after_fit(self) -> None:
        self._report("fit")

    def after_validate(self) -> None:
        self._report("validate")

    def after_test(self) -> None:
        self._report("test")

    def predict(self, model, datamodule=None, ckpt_path=None, **kwargs) -> None:
        """Top-5 classes and probabilities per image into ``<run>/predictions.csv`` (file names for a folder)."""
        predictions = self.trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path, return_predictions=True)
        if not self.trainer.is_global_zero:
            return
        classes = getattr(datamodule, "classes", None)
        loaders = self.trainer.predict_dataloaders
        dataset = (loaders[0] if isinstance(loaders, list) else loaders).dataset
        names = datamodule.predict_names(dataset) if datamodule is not None else None
        path = self.run_dir / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(handle) -> None:
            writer = csv.writer(handle)
            k = predictions[0]["indices"].shape[-1]
            columns = [f"{c}{i}" for i in range(1, k + 1) for c in ("class", "prob")]
            writer.writerow(["file" if names else "index", *columns])
            row = 0
            for batch in predictions:
                for indices, probs in zip(batch["indices"].tolist(), batch["probs"].tolist()):
                    labels = [classes[i] if classes else i for i in indices]
                    pairs = [v for pair in zip(labels, (round(p, 5) for p in probs)) for v in pair]
                    writer.writerow([names[row] if names else row, *pairs])
                    row += 1

        write_atomic(path, write)
        rows = sum(len(batch["indices"]) for batch in predictions)
        print(f"hornet predict: {rows} predictions written to {path}", file=sys.stderr)

"""`hornet fit|validate|test|predict`: LightningCLI writing run directories, with one error contract, and the
launcher that runs each run of an ablation suite.

HornetCLI leans on LightningCLI's public hooks (``parse_arguments``, ``before_instantiate_classes``,
``instantiate_trainer``, ``before_<subcommand>`` / ``after_<subcommand>``); loggers, checkpoints and predictions are
ordinary Lightning loggers, plugins and callbacks. ``tests/test_lightning_contract.py`` pins what it relies on.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins import TorchCheckpointIO

from hornet.ablation import AblationConfig, AblationVariant
from hornet.ablation.progress import PublishProgress, SuiteProgress, SuiteProgressBar
from hornet.ablation.runner import BuiltRun, SuiteRunner
from hornet.analysis.benchmark import inference_img_per_s, peak_rss_mb, plain_loop_img_per_s, reset_peak_rss
from hornet.callbacks import BestValidation, SaveOnException, StopOnSignal, TrainThroughput
from hornet.data import ImageDataModule
from hornet.data.base import resume_position
from hornet.errors import UsageError, interrupt_on_signals, one_line
from hornet.files import check_writable_dir, write_atomic
from hornet.lit import ClassificationModule, Task
from hornet.loggers import run_loggers
from hornet.models import builds_for_input_size, create_model
from hornet.runs import BEST_PREFIX, RunDir, class_args

__all__ = [
    "DEFAULT_CONFIG", "AtomicCheckpointIO", "HornetCLI", "SuiteLauncher", "check_config",
    "check_training_checkpoint", "fit_benchmark", "run_lightning",
]  # fmt: skip

# The default config `hornet fit` starts from: lightning_cli.yaml at the repository root, shipped inside the package
# (hornet/lightning_cli.yaml links to it), so an installed hornet finds it from any working directory.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "lightning_cli.yaml"
DEFAULT_TASK = ClassificationModule  # the task of a config that names none


class SuiteFinished(Exception):
    """A config with an ``ablation:`` section ran a whole suite instead of one fit; ``status`` is its exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"suite finished with status {status}")
        self.status = status


# --- checks before anything is built ------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict | None:
    """A config file's content; None for text that is not a file name (YAML given inline, parsed by jsonargparse).
    A syntax error names the file, line and column (jsonargparse reports them without the file name)."""
    try:
        if not path.is_file():
            return None
        return yaml.safe_load(path.read_text())
    except OSError:
        return None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({err.context})" if err.context else ""
        raise UsageError(f"{path}: invalid YAML{where}: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: invalid YAML: {err}") from None


def expand_config_bases(argv: list[str]) -> list[str]:
    """Check every config file's YAML, and give each file that extends another (a top-level ``base: OTHER.yaml``,
    relative to the file) its base first: ``--config FILE`` becomes ``--config OTHER.yaml --config FILE``, recursively.

    A recipe then states only what differs from its base, and later files override earlier ones key by key as usual.
    (jsonargparse's own nested ``config:`` key re-applies every default over the included file, so it cannot do this.)
    """
    _read_yaml(DEFAULT_CONFIG)

    def with_bases(path: Path, seen: tuple[Path, ...]) -> list[str]:
        content = _read_yaml(path)
        base = content.get("base") if isinstance(content, dict) else None
        if not base:
            return ["--config", str(path)]
        base_path = (path.parent / base).resolve()
        if base_path in seen or not base_path.is_file():
            problem = "includes itself" if base_path in seen else "does not exist"
            raise UsageError(f"{path}: base {base!r} {problem} ({base_path})")
        return [*with_bases(base_path, (*seen, base_path)), "--config", str(path)]

    out, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--config" and rest:
            value = rest.pop(0)
        elif arg.startswith("--config="):
            value = arg.partition("=")[2]
        else:
            out.append(arg)
            continue
        path = Path(value)
        out += with_bases(path, (path.resolve(),)) if _read_yaml(path) is not None else ["--config", value]
    return out


def check_config(config) -> None:
    """Checks that span config sections (each class validates its own arguments); ``config`` is a parsed fit config."""
    model, batch = class_args(config["model"]), config["data"]["init_args"].get("batch_size")
    if (model.get("mixup") or model.get("cutmix")) and isinstance(batch, int) and batch % 2:
        raise ValueError(f"model.mixup / model.cutmix mix pairs of images: data.batch_size must be even; got {batch}")


def check_training_checkpoint(path: str | Path, model: torch.nn.Module | None = None) -> dict:
    """Fail with one clear line unless ``path`` is a Lightning training checkpoint whose weights fit ``model``;
    returns the checkpoint (memory-mapped)."""
    if not Path(path).is_file():
        raise UsageError(f"--ckpt_path {str(path)!r}: no such checkpoint file")
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


# --- Lightning plugins and callbacks of a run ---------------------------------------------------------------------
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
        for key in ("ckpt_path", "base"):  # where it resumed from; the base's values are in the file already
            if key in config:
                config[key] = None
        super().__init__(parser, config, *args, **kwargs)

    def setup(self, trainer: Trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class HornetCLI(LightningCLI):
    """LightningCLI for any hornet task (``model.class_path``, default ``hornet.lit.ClassificationModule``) and any
    ImageDataModule, writing to ``runs/<run_name>/``.

    A config with an ``ablation:`` section turns ``fit`` into a whole suite (hornet.ablation), which raises
    ``SuiteFinished`` with its exit status. ``suite_progress`` is set by the suite launcher for the runs it starts:
    they print no banners of their own and show the suite's progress line, or, in a worker process of a suite,
    publish it to the ``publish_to`` file instead of drawing anything.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        suite_progress: SuiteProgress | None = None,
        publish_to: Path | None = None,
    ) -> None:
        self.suite_progress = suite_progress
        self.publish_to = publish_to
        args = expand_config_bases(sys.argv[1:] if args is None else args)
        parser_kwargs = {
            "parser_mode": "omegaconf+",
            "exit_on_error": False,
            # a suite hands each run its complete config: lightning_cli.yaml must not change it mid-suite
            **{
                sub: {"default_config_files": [] if suite_progress else [str(DEFAULT_CONFIG)]}
                for sub in LightningCLI.subcommands()
            },
        }
        with warnings.catch_warnings():  # the args are sys.argv's, expanded: Lightning's warning about both is moot
            warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
            super().__init__(
                Task,
                ImageDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=SaveRunConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=parser_kwargs,
                args=args,
            )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, then check ``--ckpt_path`` before Lightning reads the model's hyperparameters from it (Lightning
        loads any file given there while parsing, which would give a traceback for a file that is not a checkpoint)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc"):
            check_training_checkpoint(ckpt_path)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_name", type=str | None, default=None, help="runs/<run_name>/ (default: config stem)")
        parser.add_argument("--runs_dir", type=str, default="runs", help="parent folder of the run directories")
        parser.add_argument(
            "--base", type=str | None, default=None, help="in a config file: the config it extends (docs/training.md)"
        )
        parser.add_argument(
            "--ablation", type=AblationConfig | None, default=None, help="run a suite of variants (docs/suites.md)"
        )
        # a config names its task's class only when it is not classification; its keys go under model: as before
        parser.set_defaults({"model": {"class_path": f"{DEFAULT_TASK.__module__}.{DEFAULT_TASK.__qualname__}"}})
        for key in ("num_classes", "in_chans", "img_size"):
            parser.link_arguments(
                "data",
                f"model.init_args.{key}",
                compute_fn=lambda dm, key=key: getattr(dm, key),
                apply_on="instantiate",
            )

    # --- ablation suites -------------------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        spec = config.get("ablation")
        if spec is None:
            if self.subcommand == "fit":  # fail before anything is built or loaded
                check_config(config)
                check_writable_dir(self.run.path, key="--runs_dir / --run_name")
                if slurm_requeued() and config.get("ckpt_path") is None and self.run.newest_checkpoint():
                    config["ckpt_path"] = "last"  # a requeued job goes on from its newest checkpoint
            return
        if self.subcommand != "fit":
            raise UsageError(
                f"an ablation suite runs with `hornet fit` (it tests each run itself), not `{self.subcommand}`"
            )
        from rich.console import Console

        spec = spec.as_dict()
        spec = AblationConfig(**{**spec, "variants": [AblationVariant(**v) for v in spec["variants"]]})
        base = yaml.safe_load(self.parser.dump(self.config, skip_unset=False, skip_check=True))["fit"]
        runner = SuiteRunner(spec, base, SuiteLauncher(self.parser), console=Console(stderr=True))
        raise SuiteFinished(runner.run())

    # --- run directory -----------------------------------------------------------------------------------------------
    @property
    def run(self) -> RunDir:
        config = self.config[self.subcommand]
        name = config.get("run_name")
        if not name:
            configs = [Path(str(c)) for c in (config.get("config") or []) if c]
            configs = [c for c in configs if c.resolve() != DEFAULT_CONFIG.resolve()]
            name = configs[-1].stem if configs else "default"
        return RunDir(Path(config.get("runs_dir") or "runs") / name)

    @property
    def fresh_fit(self) -> bool:
        """A fit that starts the run anew (no --ckpt_path): it replaces the run's checkpoints and metrics."""
        return self.subcommand == "fit" and self.config[self.subcommand].get("ckpt_path") is None

    def instantiate_trainer(self, **kwargs) -> Trainer:
        run = self.run
        trainer_config = self.config_init[self.subcommand]["trainer"]
        # metrics.csv always, TensorBoard and any configured logger beside it; only a fresh fit starts the CSV anew
        kwargs["logger"] = run_loggers(
            run.path, keep_existing=not self.fresh_fit, configured=trainer_config.get("logger")
        )
        kwargs.setdefault("default_root_dir", str(run.path))
        if trainer_config.get("plugins") is None and "deepspeed" not in str(trainer_config.get("strategy")).lower():
            kwargs["plugins"] = [AtomicCheckpointIO()]
        monitor = self.model.monitor
        callbacks = [
            ModelCheckpoint(
                dirpath=str(run.checkpoints),
                filename=BEST_PREFIX + "epoch{epoch:03d}-" + monitor.split("/")[-1] + "{" + monitor + ":.4f}",
                auto_insert_metric_name=False,
                monitor=monitor,
                mode="max",
                save_top_k=1,
            ),
            # the newest epoch, with last.ckpt linked to it (Lightning writes "last" only beside a saved checkpoint)
            ModelCheckpoint(
                dirpath=str(run.checkpoints),
                filename="epoch{epoch:03d}",
                auto_insert_metric_name=False,
                monitor=None,
                save_top_k=1,
                save_last="link",
            ),
            SaveOnException(
                run.checkpoints / "on_exception.ckpt",
                resume_hint=None if self.suite_progress else f"--run_name {run.name} --ckpt_path last",
            ),
            StopOnSignal(),
            TrainThroughput(),
            BestValidation(),
        ]
        if self.subcommand == "predict":
            callbacks.append(self.model.prediction_writer(run.path))
        if self.publish_to is not None:  # a suite's worker: its progress goes to a file, the suite's process draws it
            callbacks.append(PublishProgress(self.suite_progress, self.publish_to))
            kwargs["enable_progress_bar"] = False
        elif trainer_config.get("enable_progress_bar") is not False:
            suite, stderr = self.suite_progress, {"stderr": True}  # stdout is for results (tables, CSV)
            bar = SuiteProgressBar(suite, leave=True, console_kwargs=stderr) if suite else None
            callbacks.append(bar or RichProgressBar(leave=True, console_kwargs=stderr))
        if trainer_config.get("enable_model_summary") is not False and not self.suite_progress:
            callbacks.append(RichModelSummary(max_depth=1))
        if self.suite_progress:
            kwargs["enable_model_summary"] = False  # one suite, one display: no summary per run
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}
        return super().instantiate_trainer(**kwargs)

    def _resolve_ckpt_path(self, *, default_best: bool) -> None:
        config = self.config_init[self.subcommand]  # what the subcommand is called with
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            path = self.run.newest_checkpoint()  # last.ckpt, or a newer on-exception / hpc checkpoint
            if path is None:
                raise UsageError(
                    f"--ckpt_path last: no {self.run.checkpoints / 'last.ckpt'} to resume from (run `hornet fit` for "
                    "this run first)"
                )
            config["ckpt_path"] = str(path)
        elif ckpt_path in (None, "best") and default_best:
            best = self.run.best_checkpoint()
            if best is None:
                raise UsageError(
                    f"no checkpoint in {self.run.checkpoints}: fit this run first, or pass --ckpt_path FILE"
                )
            config["ckpt_path"] = str(best)
        if config.get("ckpt_path") is not None:
            checkpoint = check_training_checkpoint(config["ckpt_path"], self.model)
            if self.subcommand == "fit" and isinstance(self.datamodule, ImageDataModule):
                self.datamodule.resume_at = resume_position(checkpoint)

    def before_fit(self) -> None:
        self._resolve_ckpt_path(default_best=False)
        if self.trainer.is_global_zero:
            if self.fresh_fit:  # a new fit of this run: no stale checkpoint mixed in, none for Lightning to resume
                shutil.rmtree(self.run.checkpoints, ignore_errors=True)
                for stale in self.run.path.glob("hpc_ckpt_*.ckpt"):
                    stale.unlink()
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.write_meta(self.config[self.subcommand].get("seed_everything"))

    def before_validate(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def before_test(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def before_predict(self) -> None:
        self._resolve_ckpt_path(default_best=True)

    def _report(self, what: str) -> None:
        if not self.trainer.is_global_zero or self.suite_progress:
            return
        metrics = {k: round(float(v), 4) for k, v in self.trainer.callback_metrics.items() if "/" in k}
        print(f"hornet {what}: run directory {self.run.path}", file=sys.stderr)
        print(f"  logs: {self.run.metrics_file}  config: {self.run.config_file}", file=sys.stderr)
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


def slurm_requeued() -> bool:
    """True in a SLURM job started again by ``scontrol requeue`` (after preemption or SIGUSR1 near its time limit)."""
    return os.environ.get("SLURM_RESTART_COUNT", "0").strip() not in ("", "0")


def _callback(trainer: Trainer, kind: type):
    return next(c for c in trainer.callbacks if isinstance(c, kind))


@contextmanager
def quiet_lightning():
    """Inside a suite: no per-run banners, tips or hints from Lightning (warnings and errors still show)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # Lightning's own
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class SuiteLauncher:
    """How `hornet fit` builds and runs one run of an ablation suite (hornet.ablation.runner.RunLauncher)."""

    def __init__(self, parser: LightningArgumentParser) -> None:
        self.parser = parser  # the `hornet fit` parser the suite's own config was parsed with

    def build(self, config: dict, *, meta: bool) -> BuiltRun:
        namespace = self.parser.parse_object({"subcommand": "fit", "fit": config})
        check_config(namespace["fit"])
        with torch.device("meta") if meta else nullcontext():
            init = self.parser.instantiate(namespace)["fit"]
        return BuiltRun(init.model, init.data, int(namespace["fit"].trainer.max_epochs or 0))

    def fit_and_test(
        self, config: dict, run: RunDir, resume_from: Path | None, progress: SuiteProgress, status: Path | None
    ) -> dict:
        common = ["--config", yaml.safe_dump(config, sort_keys=False), "--runs_dir", str(run.path.parent)]
        common += ["--run_name", run.name]
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        progress.stage = "fit" + (" (resumed)" if resume_from else "")
        resume = ["--ckpt_path", str(resume_from)] if resume_from else []
        with quiet_lightning():
            fit = HornetCLI(["fit", *common, *resume], suite_progress=progress, publish_to=status)
            peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
            progress.stage, progress.run_fraction = "test", 0.95
            test = HornetCLI(["test", *common, "--verbose", "false"], suite_progress=progress, publish_to=status)
        best = _callback(fit.trainer, BestValidation).best
        scores = {"best_" + name.replace("/", "_"): round(value, 6) for name, value in best.items()}
        tested = {k: float(v) for k, v in test.trainer.callback_metrics.items() if k.startswith("test/")}
        summary = {k: v for k, v in tested.items() if k.count("/") == 1 and not k.endswith("/loss")}  # not per class
        scores |= {k.replace("/", "_"): round(v, 6) for k, v in sorted(summary.items())}
        device = test.trainer.strategy.root_device
        data = test.datamodule
        x = torch.randn(data.batch_size, data.in_chans, data.img_size, data.img_size, device=device)
        speed = _callback(fit.trainer, TrainThroughput).median_img_s
        return {
            "scores": scores,
            "train_img_s": round(speed, 1) if speed else None,
            "infer_img_s": round(inference_img_per_s(test.model.network().to(device), x), 1),
            "peak_mem_mb": round(peak, 1) if peak is not None else None,
            "epochs": fit.trainer.current_epoch,
        }


def fit_benchmark(backbone: str, *, images: int, rounds: int, extra: list[str] = ()) -> dict[str, list[float]]:
    """Training images per second of `hornet fit` (the default config with ``backbone``, one epoch on ``images``
    training images, no validation) and of a plain PyTorch loop over the same model architecture, the same images,
    batch, lr, weight decay, label smoothing and clipping, in turns for ``rounds`` rounds. ``extra``: more `hornet fit`
    arguments, e.g. another data module."""
    speeds: dict[str, list[float]] = {"plain PyTorch loop": [], "hornet fit": []}
    with tempfile.TemporaryDirectory() as runs, quiet_lightning():
        for index in range(rounds):
            args = ["fit", "--model.backbone", backbone, "--data.init_args.limit_train", str(images)]
            args += ["--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0"]
            args += ["--trainer.enable_model_summary", "false", *extra]
            fit = HornetCLI([*args, "--runs_dir", runs, "--run_name", f"round{index}"])
            speeds["hornet fit"].append(_callback(fit.trainer, TrainThroughput).wall_img_s)
            data, hp = fit.datamodule, fit.model.hparams
            loader = data.train_dataloader()  # the same images, gathered once into two tensors
            x, y = (torch.cat(parts) for parts in zip(*loader))
            sized = {"img_size": data.img_size} if builds_for_input_size(backbone) else {}
            model = create_model(backbone, num_classes=data.num_classes, in_chans=data.in_chans, **sized)
            speeds["plain PyTorch loop"].append(
                plain_loop_img_per_s(
                    model, x, y, batch_size=data.batch_size, lr=hp.lr, weight_decay=hp.weight_decay,
                    clip=fit.trainer.gradient_clip_val, label_smoothing=hp.label_smoothing,
                    warmup=_callback(fit.trainer, TrainThroughput).warmup,
                )
            )  # fmt: skip
    return speeds


def run_lightning(argv: list[str]) -> int:
    """`hornet fit|validate|test|predict ...`: the exit status of the command (or of the suite it ran)."""
    # LightningCLI reads sys.argv, and so does Lightning's DDP launcher, which starts ranks 1..N-1 by re-running
    # this same command line: it must be the whole command, whether main() got it from the shell or as a list.
    program, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        with interrupt_on_signals():  # Lightning saves on_exception.ckpt on the way out
            HornetCLI()  # from sys.argv
    except SuiteFinished as done:
        return done.status
    except MisconfigurationException as err:  # Lightning's own checks of the config (an accelerator that is absent)
        raise UsageError(one_line(err)) from err
    finally:
        sys.argv = program
    return 0

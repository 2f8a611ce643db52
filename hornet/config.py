"""A run's config: the one parser every command, suite and benchmark shares, config files that extend a ``base:``, and
the resolved config they become.

A config changes form once: YAML files and command-line keys become one resolved dict (every key, every default,
class paths in full), parsed here. That dict is what ``hornet.launch.build_run`` builds a run from, what the run
saves as its config.yaml, what its hash is computed from (``hornet.runs.config_hash``) and what ``--run_name X``
reads back.

The default config (lightning_cli.yaml) is for a person's ``hornet fit``: a config with an ``ablation:`` section (a
suite) states its whole recipe and does not inherit it, so tuning the default changes no suite.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser

from hornet.ablation import AblationConfig
from hornet.data import ImageDataModule
from hornet.errors import UsageError
from hornet.lit import Task
from hornet.lit.recipe import RECIPE_KEYS
from hornet.models.detector import DetectorSpec
from hornet.runs import DEFAULT_RUNS_DIR, RunDir, class_args

__all__ = [
    "DEFAULT_CONFIG", "STAGES", "CommandConfig", "check_config", "command_config", "config_parser",
    "expand_config_bases", "parse_config", "resolve_config", "run_dir_of", "upgrade_layout",
]  # fmt: skip

# The default config `hornet fit` starts from: lightning_cli.yaml at the repository root, shipped inside the package
# (hornet/lightning_cli.yaml links to it), so an installed hornet finds it from any working directory.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "lightning_cli.yaml"
DEFAULT_TASK = "hornet.lit.ClassificationModule"  # the task of a config that names none
STAGES = ("fit", "validate", "test", "predict")
Stage = Literal["fit", "validate", "test", "predict"]
# keys of configs saved before the parser was hornet's own (LightningCLI added them; they were always null)
LEGACY_NULL_KEYS = ("optimizer", "lr_scheduler", "weights_only")
DETECTOR_KEYS = tuple(key for key in DetectorSpec.__dataclass_fields__ if key != "kind")


# --- config files ------------------------------------------------------------------------------------------------
def read_yaml(path: Path) -> dict | None:
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


def expand_config_bases(argv: list[str]) -> tuple[list[str], list[dict]]:
    """Check every config file's YAML, and give each file that extends another (a top-level ``base: OTHER.yaml``,
    relative to the file) its base first: ``--config FILE`` becomes ``--config OTHER.yaml --config FILE``, recursively.
    Returns the new argv and the content of every config file in it, in order.

    A recipe then states only what differs from its base, and later files override earlier ones key by key as usual.
    (jsonargparse's own nested ``config:`` key re-applies every default over the included file, so it cannot do this.)
    """
    contents: list[dict] = []

    def with_bases(path: Path, seen: tuple[Path, ...]) -> list[str]:
        content = read_yaml(path)
        base = content.get("base") if isinstance(content, dict) else None
        expanded = []
        if base:
            base_path = (path.parent / base).resolve()
            if base_path in seen or not base_path.is_file():
                problem = "includes itself" if base_path in seen else "does not exist"
                raise UsageError(f"{path}: base {base!r} {problem} ({base_path})")
            expanded = with_bases(base_path, (*seen, base_path))
        content = content if isinstance(content, dict) else {}
        upgraded = _with_longer_schedule(upgrade_layout(content), path)
        contents.append(upgraded)
        if upgraded != content:  # a flat-layout file moved into today's, or a schedule read in: given inline
            return [*expanded, "--config", yaml.safe_dump({k: v for k, v in upgraded.items() if k != "base"})]
        return [*expanded, "--config", str(path)]

    out, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("--config", "-c") and rest:
            value = rest.pop(0)
        elif arg.startswith("--config="):
            value = arg.partition("=")[2]
        else:
            out.append(arg)
            continue
        path = Path(value)
        if read_yaml(path) is None:  # inline YAML
            inline = yaml.safe_load(value)
            contents.append(inline if isinstance(inline, dict) else {})
            out += ["--config", value]
        else:
            out += with_bases(path, (path.resolve(),))
    return out, contents


def _with_longer_schedule(content: dict, path: Path) -> dict:
    """A suite's ``ablation.longer_schedule: OVERLAY.yaml`` (relative to the file) becomes what reports compare runs
    with: ``{"config": OVERLAY.yaml, "settings": {dotted key: value}}``, the overlay's own keys (its base and its
    ablation section aside), so the schedule is stated once, in the overlay."""
    ablation = content.get("ablation")
    overlay = ablation.get("longer_schedule") if isinstance(ablation, dict) else None
    if not isinstance(overlay, str):
        return content
    overlay_path = (path.parent / overlay).resolve()
    overlay_content = read_yaml(overlay_path)
    if not isinstance(overlay_content, dict):
        raise UsageError(f"{path}: ablation.longer_schedule {overlay!r} is not a config file ({overlay_path})")
    settings = _dotted({k: v for k, v in upgrade_layout(overlay_content).items() if k not in ("base", "ablation")})
    shown = os.path.relpath(overlay_path) if overlay_path.is_relative_to(Path.cwd()) else str(overlay_path)
    return {**content, "ablation": {**ablation, "longer_schedule": {"config": shown, "settings": settings}}}


def _dotted(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (lists and empty dicts are values)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- the parser ---------------------------------------------------------------------------------------------------
@functools.cache
def config_parser() -> LightningArgumentParser:
    """The parser of a run's config: ``trainer``, ``model`` (any hornet Task), ``data`` (any ImageDataModule), the seed,
    where the run is written, the checkpoint it starts from, and an optional ``ablation`` section."""
    from jsonargparse import ActionConfigFile
    from lightning import __version__ as lightning_version

    parser = LightningArgumentParser(
        prog="hornet fit|validate|test|predict",
        description="Train, validate, test or predict with a hornet run (docs/training.md).",
        parser_mode="omegaconf+",
        exit_on_error=False,
        dump_header=[f"lightning.pytorch=={lightning_version}"],
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a config file (YAML); later files win")
    parser.add_argument(
        "--seed_everything", type=bool | int, default=True, help="the run's seed (true: a random one, false: none)"
    )
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_lightning_class_args(Task, "model", subclass_mode=True)
    parser.add_lightning_class_args(ImageDataModule, "data", subclass_mode=True)
    parser.add_argument(
        "--run_name", type=str | None, default=None, help="<runs_dir>/<run_name>/ (default: the config's stem)"
    )
    parser.add_argument("--runs_dir", type=str, default=DEFAULT_RUNS_DIR, help="parent folder of runs and suites")
    parser.add_argument(
        "--ckpt_path", type=str | None, default=None,
        help="fit: resume from it (last: the run's newest); validate/test/predict: the weights (default: best)",
    )  # fmt: skip
    parser.add_argument(
        "--base", type=str | None, default=None, help="in a config file: the config it extends (docs/training.md)"
    )
    parser.add_argument(
        "--verbose", type=bool, default=False, help="Lightning's banners, tips, warnings and summary tables as well"
    )
    parser.add_argument(
        "--ablation", type=AblationConfig | None, default=None, help="run a suite of variants (docs/suites.md)"
    )
    for key in ("num_classes", "in_chans", "img_size"):  # the model's input and output come from its data
        parser.link_arguments(
            "data", f"model.init_args.{key}", compute_fn=lambda dm, key=key: getattr(dm, key), apply_on="instantiate"
        )
    return parser


def _as_dict(namespace) -> dict:
    """A parsed config as plain data (the parser's own serialisation: class paths in full, every key kept)."""
    dumped = config_parser().dump(namespace, format="json", skip_validation=True, skip_unset=False)
    return json.loads(dumped)


def parse_config(config: dict):
    """``config`` parsed and checked (a jsonargparse Namespace, ready to instantiate)."""
    namespace = config_parser().parse_object(config)
    check_config(namespace)
    return namespace


def resolve_config(config: dict) -> dict:
    """``config`` with every key and default, in the parser's own spelling: what a run's hash is computed from."""
    return _as_dict(parse_config(config))


def check_config(config) -> None:
    """Checks that span config sections (each class validates its own arguments)."""
    model, batch = class_args(config["model"]), config["data"]["init_args"].get("batch_size")
    if (model.get("mixup") or model.get("cutmix")) and isinstance(batch, int) and batch % 2:
        raise ValueError(f"model.mixup / model.cutmix mix pairs of images: data.batch_size must be even; got {batch}")


def upgrade_layout(config: dict) -> dict:
    """A config in the flat layout of configs written before ``model.recipe`` and ``model.detector`` (and with the
    null optimizer keys LightningCLI saved), in today's: a run saved before (runs/X/config.yaml) still loads."""
    config = {key: value for key, value in config.items() if not (key in LEGACY_NULL_KEYS and value is None)}
    model = config.get("model")
    if not isinstance(model, dict):
        return config
    nested = "class_path" in model
    args = dict((model.get("init_args") if nested else model) or {})
    recipe = {key: args.pop(key) for key in RECIPE_KEYS if key in args}
    if recipe:
        args["recipe"] = {**(args.get("recipe") or {}), **recipe}
    if str(model.get("class_path", "")).endswith("DetectionModule") and not isinstance(args.get("detector"), dict):
        spec = {key: args.pop(key) for key in DETECTOR_KEYS if key in args}
        if "detector" in args:
            spec["kind"] = args.pop("detector")
        if spec:
            args["detector"] = spec
    config["model"] = {**model, "init_args": args} if nested else args
    return config


def run_dir_of(config: dict, config_files: list[str] = ()) -> RunDir:
    """Where a single run of ``config`` is written: ``<runs_dir>/<run_name>``, the run name defaulting to the last
    config file's stem, else ``default``."""
    name = config.get("run_name")
    if not name:
        files = [Path(f) for f in config_files if Path(f).is_file() and Path(f).resolve() != DEFAULT_CONFIG.resolve()]
        name = files[-1].stem if files else "default"
    return RunDir(Path(config.get("runs_dir") or DEFAULT_RUNS_DIR) / name)


# --- a command line -> the resolved config ----------------------------------------------------------------------
@dataclass(frozen=True)
class CommandConfig:
    """What `hornet fit|validate|test|predict ARGS` asks for: the resolved config, where the single run is written,
    and, when the config came from a run found by name, that run's config file."""

    config: dict
    run: RunDir
    found: Path | None = None

    @property
    def suite(self) -> bool:
        return self.config.get("ablation") is not None


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The last value of ``--flag VALUE`` or ``--flag=VALUE`` in ``argv``."""
    value = None
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.partition("=")[2]
    return value


def _saved_run_config(argv: list[str], stage: str) -> tuple[Path, dict] | None:
    """`hornet validate|test|predict --run_name X` (or a resumed `hornet fit --run_name X --ckpt_path ...`) without
    ``--config``: run X's own config.yaml, when it has one."""
    name = _flag_value(argv, "--run_name")
    resumed = stage != "fit" or _flag_value(argv, "--ckpt_path") is not None
    if not resumed or not name or _flag_value(argv, "--config") or _flag_value(argv, "-c"):
        return None
    path = RunDir(Path(_flag_value(argv, "--runs_dir") or DEFAULT_RUNS_DIR) / name).config_file
    content = read_yaml(path)
    return (path, upgrade_layout(content)) if isinstance(content, dict) else None


def command_config(argv: list[str], stage: Stage) -> CommandConfig:
    """Parse `hornet <stage> ARGS` into the resolved config.

    The config starts from lightning_cli.yaml (a classification run), or, for ``validate|test|predict --run_name X``
    and a resumed ``fit --run_name X --ckpt_path ...`` with no ``--config``, from run X's saved config.yaml; a
    suite's config files (with ``ablation:``) and configs that name their task (``model.class_path``) start from the
    code's defaults alone.
    ``--help`` and ``--print_config`` print and exit here (SystemExit 0).
    """
    argv, contents = expand_config_bases(argv)
    parser = config_parser()
    saved = _saved_run_config(argv, stage)
    if saved is not None:
        namespace = parser.parse_args(argv, namespace=parser.parse_object(saved[1]))
    else:
        suite = any("ablation" in content for content in contents) or any(a.startswith("--ablation") for a in argv)
        task = any("class_path" in (content.get("model") or {}) for content in contents)
        task = task or any(a.startswith(("--model.class_path", "--model=")) or a == "--model" for a in argv)
        # the default task unless one is named (named once, so no other task's defaults carry over into it), and
        # the default config for a person's classification run
        defaults = [] if task else ["--model.class_path", DEFAULT_TASK]
        defaults += [] if suite or task else ["--config", str(DEFAULT_CONFIG)]
        namespace = parser.parse_args([*defaults, *argv])
    config = _as_dict(namespace)
    check_config(namespace)
    files = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    run = run_dir_of(config, files)
    if saved is not None:
        run = RunDir(saved[0].parent)  # the run found by name, wherever --runs_dir pointed
    config["run_name"], config["runs_dir"] = run.name, str(run.path.parent)
    return CommandConfig(config, run, saved[0] if saved else None)

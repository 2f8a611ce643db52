"""The `ablation:` config section: named variants of the base config, the run list, and each run's merged config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from hornet.runs import BOOKKEEPING_KEYS, DEFAULT_RUNS_DIR, RunDir, suite_run_dir

__all__ = [
    "AblationConfig",
    "AblationRun",
    "AblationVariant",
    "plan_runs",
    "select_runs",
    "variant_config",
]


@dataclass
class AblationVariant:
    """One arm of a study.

    Args:
        name: folder-safe name (``order3``, ``gf_stages_3_4``).
        overrides: dotted keys of the base config and their values, e.g. ``model.backbone_kwargs.orders: [3, 3, 3, 3]``
            or ``data.batch_size: 64`` (``data.X`` means the datamodule's ``init_args.X``); deep-merged with OmegaConf.
        baseline: the variant this one's paired difference is taken against in reports (default: the suite's
            reference), e.g. each gnConv arm against its own plain host.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None


@dataclass
class AblationConfig:
    """A whole study run by one ``hornet fit``: every variant x seed is a fit followed by a test.

    Args:
        name: the suite's name (default output folder ``<runs_dir>/<name>``).
        variants: the arms of the study.
        reference: the variant the others are compared to (default: the first).
        seeds: one run per seed per variant.
        output_dir: where ``<variant>/seed<k>/`` and ``results.csv`` go (default ``<runs_dir>/<name>``).
        publish_dir: when set, each finished run's small files (no checkpoints) are copied there as it lands
            (``hornet publish``; e.g. ``results/<name>``, kept in git so a suite resumes on another machine).
        note: one plain line of your own, printed with the suite's output and its report (its scale and whether it
            reached its longer schedule are printed anyway, read from the runs' configs).
        longer_schedule: the overlay that gives the study's answer (``scale/cpu_full.yaml``, relative to the file
            that says it); read in as ``{config, settings}``. Runs whose configs differ from those settings (the smoke
            scale, a one-epoch override) are reported as a check that the study runs, not its answer.
        only: run just one entry of the variant x seed list: its index, ``name`` (all its seeds) or ``name:seed``
            (for array jobs).
        workers: how many runs go side by side on this machine, each in a process of its own with its share of the
            CPU threads (or a GPU of its own when there are several); ``auto`` picks one per GPU, else one per CPU
            core. 1 runs them one after another in this process.
        dry_run: build every variant on the meta device, print the plan (params, MACs, estimated wall time), stop.
        estimate: whether a dry run estimates the wall time (a short real run of each distinct variant, with each
            worker's threads; hornet/ablation/estimate.py).
        rerun_changed: redo finished runs whose config changed (otherwise that is an error).
        retry_failed: run failed runs again (otherwise they are kept as failed).
    """

    name: str
    variants: list[AblationVariant]
    reference: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    output_dir: str | None = None
    publish_dir: str | None = None
    note: str | None = None
    longer_schedule: dict | None = None
    only: int | str | None = None
    workers: int | Literal["auto"] = 1
    dry_run: bool = False
    estimate: bool = True
    rerun_changed: bool = False
    retry_failed: bool = False

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if not names:
            raise ValueError("ablation.variants is empty; list at least one variant")
        for name in names:
            if not name or "/" in name or ":" in name or name.startswith("."):
                raise ValueError(f"ablation.variants: {name!r} is not a folder-safe name (no '/', ':' or leading '.')")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"ablation.variants: duplicate names {duplicates}")
        if self.reference is None:
            self.reference = names[0]
        elif self.reference not in names:
            raise ValueError(f"ablation.reference {self.reference!r} is not a variant; choose one of {names}")
        for variant in self.variants:
            if variant.baseline is not None and variant.baseline not in names:
                raise ValueError(
                    f"ablation.variants {variant.name}: baseline {variant.baseline!r} is not a variant; choose one of "
                    f"{names}"
                )
        if self.workers != "auto" and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"ablation.workers must be a positive integer or 'auto'; got {self.workers!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"ablation.seeds must be a non-empty list of distinct integers; got {self.seeds}")

    @classmethod
    def from_dict(cls, section: dict) -> AblationConfig:
        """From a resolved config's ``ablation`` section (plain data)."""
        variants = [AblationVariant(**variant) for variant in section["variants"]]
        return cls(**{**section, "variants": variants})

    def suite_dir(self, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
        """Where the suite is written: ``output_dir``, else ``<runs_dir>/<name>``."""
        return Path(self.output_dir or Path(runs_dir) / self.name)


@dataclass(frozen=True)
class AblationRun:
    """One entry of the variant x seed list."""

    index: int
    variant: AblationVariant
    seed: int

    @property
    def key(self) -> str:
        return f"{self.variant.name}:{self.seed}"

    def run_dir(self, suite_dir: Path) -> RunDir:
        return RunDir(suite_run_dir(suite_dir, self.variant.name, self.seed))


def plan_runs(spec: AblationConfig) -> list[AblationRun]:
    """Every variant x seed, variant-major (all seeds of the first variant, then the next)."""
    pairs = [(variant, seed) for variant in spec.variants for seed in spec.seeds]
    return [AblationRun(index, variant, seed) for index, (variant, seed) in enumerate(pairs)]


def select_runs(runs: list[AblationRun], only: int | str | None) -> list[AblationRun]:
    """``ablation.only``: an index into ``runs``, a variant name, or ``name:seed``; None keeps them all."""
    if only is None:
        return runs
    if isinstance(only, int) or (isinstance(only, str) and only.isdigit()):
        index = int(only)
        if not 0 <= index < len(runs):
            raise ValueError(f"ablation.only {index} is out of range: the suite has runs 0..{len(runs) - 1}")
        return [runs[index]]
    chosen = [r for r in runs if only in (r.variant.name, r.key)]
    if not chosen:
        names = sorted({r.variant.name for r in runs})
        raise ValueError(
            f"ablation.only {only!r} matches no run; use an index, a variant ({', '.join(names)}) or name:seed"
        )
    return chosen


def _dotted_key(key: str, config: dict) -> str:
    """``data.X`` addresses the datamodule's init_args when the data section is a class_path/init_args pair."""
    head, _, rest = key.partition(".")
    section = config.get(head)
    if (
        rest
        and isinstance(section, dict)
        and "class_path" in section
        and not rest.startswith(("class_path", "init_args"))
    ):
        return f"{head}.init_args.{rest}"
    return key


def variant_config(base: dict, variant: AblationVariant, seed: int) -> dict:
    """The base config (a plain dict, no ``ablation``) with the variant's dotted overrides deep-merged and the seed."""
    config = OmegaConf.create({k: v for k, v in base.items() if k not in BOOKKEEPING_KEYS})
    for key, value in variant.overrides.items():
        OmegaConf.update(config, _dotted_key(key, base), value, merge=True, force_add=True)
    config.seed_everything = seed
    return OmegaConf.to_container(config, resolve=False)

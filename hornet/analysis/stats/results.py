"""Suite results as tables: load results.csv, aggregate over seeds, paired differences to the reference variant.

Shared by `hornet report` and the notebooks, so both show the same numbers.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from scipy import stats

from hornet.analysis.stats.scale import SuiteScale, suite_scale
from hornet.runs import CONFIG_FILE, NUMERIC_COLUMNS, RunDir, RunResult, suite_run_dir

__all__ = [
    "PairedDifference",
    "SuiteResults",
    "VariantSummary",
    "load_suite",
    "paired_difference",
    "power_line",
    "problem_rows",
    "selection_line",
    "suite_power",
    "summary_rows",
    "training_curves",
]


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences (variant - reference) with a two-sided t confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    sd: float = math.nan  # standard deviation of the per-seed differences (nan for one pair)

    @property
    def significant(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def paired_difference(values: dict[int, float], reference: dict[int, float], confidence: float = 0.95):
    """Pair by seed; None when no seed is shared. With one pair the interval is unbounded (nan)."""
    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None
    differences = [values[s] - reference[s] for s in seeds]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return PairedDifference(mean, math.nan, math.nan, 1)
    sd = statistics.stdev(differences)
    half = stats.t.ppf(0.5 + confidence / 2, len(differences) - 1) * sd / math.sqrt(len(differences))
    return PairedDifference(mean, mean - half, mean + half, len(differences), sd)


@dataclass
class VariantSummary:
    """One variant over its ok runs."""

    variant: str
    runs: list[RunResult]
    difference: PairedDifference | None = None
    baseline: str | None = None  # the variant ``difference`` is taken against

    def values(self, column: str) -> dict[int, float]:
        return {r.seed: float(r.value(column)) for r in self.runs if r.value(column) is not None}

    def mean(self, column: str) -> float | None:
        values = list(self.values(column).values())
        return statistics.fmean(values) if values else None

    def std(self, column: str) -> float | None:
        values = list(self.values(column).values())
        return statistics.stdev(values) if len(values) >= 2 else None


@dataclass
class SuiteResults:
    """A suite's rows, split into ok runs (summarised per variant) and the rest (listed, never averaged in)."""

    name: str
    path: Path
    rows: list[RunResult]
    reference: str | None
    metric: str = "test_top1"
    variants: list[VariantSummary] = field(default_factory=list)
    note: str | None = None  # the suite's own line for its reader (ablation.note)
    scale: SuiteScale | None = None  # read from its runs' configs (None: no run folder holds one)
    label: str = ""  # what a reader sees: its name, or its folder where several suites of one report share a name

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def notes(self) -> list[str]:
        """What a reader needs beside the table: its scale (with the caveat short of its longer schedule) and the
        suite's own note."""
        return [line for line in (self.scale.line() if self.scale else None, self.note) if line]

    @property
    def not_ok(self) -> list[RunResult]:
        return [r for r in self.rows if not r.ok]

    def run_dir(self, result: RunResult) -> RunDir:
        return RunDir(suite_run_dir(self.path.parent, result.variant, result.seed))


def label_suites(suites: list[SuiteResults]) -> list[SuiteResults]:
    """Suites shown together are labelled by their folder when their names clash (order_ablation_cpu_full beside
    order_ablation, both named order_ablation), by their path when their folders' names clash too; one suite given
    twice keeps its name."""
    for suite in suites:
        folders = {other.path.parent.resolve() for other in suites if other.name == suite.name}
        if len(folders) > 1:
            same_folder_name = [f for f in folders if f.name == suite.path.parent.name]
            suite.label = suite.path.parent.name if len(same_folder_name) == 1 else str(suite.path.parent)
    return suites


def _suite_spec(suite_dir: Path) -> dict:
    """suite.json, as the suite's runner wrote it (empty for a bare results.csv)."""
    spec = suite_dir / "suite.json"
    return json.loads(spec.read_text()) if spec.is_file() else {}


def _reference_of(suite_dir: Path, variants: list[str]) -> str | None:
    """The suite's reference variant as recorded in its suite.json (the first variant without one)."""
    return _suite_spec(suite_dir).get("reference") or (variants[0] if variants else None)


def _baselines_of(suite_dir: Path) -> dict[str, str]:
    """Variants that name their own baseline in suite.json (e.g. a gnConv arm and its plain host)."""
    return {v["name"]: v["baseline"] for v in _suite_spec(suite_dir).get("variants", []) if v.get("baseline")}


def load_suite(path: str | Path, *, reference: str | None = None, metric: str | None = None) -> SuiteResults:
    """A suite directory or its results.csv -> summaries per variant (in run order) with paired differences, each to
    the variant's own baseline when suite.json names one, else to the reference (``reference`` given here: to it).

    ``metric`` defaults to the one suite.json names (the test twin of the task's monitor: test_top1, test_mIoU)."""
    path = Path(path)
    csv_path = path / "results.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise FileNotFoundError(f"{path}: no results.csv (give a suite directory or its results.csv)")
    with csv_path.open() as handle:
        reader = csv.DictReader(handle)
        rows = [RunResult.from_row(r) for r in reader]
        scores = [c for c in reader.fieldnames or () if c not in RunResult.__dataclass_fields__]
    if not rows:
        raise ValueError(f"{csv_path} has no runs yet")
    numeric = [*NUMERIC_COLUMNS, *scores]
    metric = metric or _suite_spec(csv_path.parent).get("metric", "test_top1")
    if metric not in numeric:
        raise ValueError(f"--metric must be a numeric column of {csv_path} ({', '.join(numeric)}); got {metric!r}")
    order = list(dict.fromkeys(r.variant for r in rows))
    baselines = {} if reference else _baselines_of(csv_path.parent)
    reference = reference or _reference_of(csv_path.parent, order)
    if reference not in order:
        raise ValueError(f"reference variant {reference!r} is not in {csv_path}; choose one of {order}")
    name = rows[0].suite or csv_path.parent.name
    spec = _suite_spec(csv_path.parent)
    note = spec.get("note")
    results = SuiteResults(name=name, path=csv_path, rows=rows, reference=reference, metric=metric, note=note)
    ok = [r for r in rows if r.ok]
    configs = [path for r in ok if (path := results.run_dir(r).path / CONFIG_FILE).is_file()]
    if configs:
        results.scale = suite_scale(
            [yaml.safe_load(path.read_text()) for path in configs], [r.seed for r in ok], spec.get("longer_schedule")
        )
    summaries = {v: VariantSummary(v, [r for r in ok if r.variant == v]) for v in order}
    for summary in summaries.values():
        baseline = baselines.get(summary.variant, reference)
        if summary.variant != baseline and summary.runs:
            summary.baseline = baseline
            if baseline in summaries:  # else: no run of it yet ("no shared seeds")
                summary.difference = paired_difference(summary.values(metric), summaries[baseline].values(metric))
    results.variants = [s for s in summaries.values() if s.runs]
    return results


def training_curves(results: SuiteResults, column: str | None = None) -> dict[str, dict[int, list[float]]]:
    """Per variant, per epoch: ``column`` of every ok run, read from the runs' metrics.csv (default: the validation
    twin of the suite's metric, e.g. val/top1 for test_top1)."""
    column = column or "val/" + results.metric.removeprefix("test_")
    curves: dict[str, dict[int, list[float]]] = {}
    for result in (r for r in results.rows if r.ok):
        for entry in results.run_dir(result).metrics():
            if column in entry and "epoch" in entry:
                epochs = curves.setdefault(result.variant, {})
                epochs.setdefault(int(entry["epoch"]) + 1, []).append(entry[column])
    return curves


def _fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None or math.isnan(value) else f"{scale * value:.{digits}f}"


def _parts(results: SuiteResults) -> list[str]:
    """The network parts a suite counted on its own (``<part>_macs`` columns, e.g. decoder)."""
    columns = dict.fromkeys(key for row in results.rows for key in row.scores)
    return [key.removesuffix("_macs") for key in columns if key.endswith("_macs")]


def summary_rows(results: SuiteResults, *, label_suite: bool = False) -> list[dict]:
    """One row per variant: cost, speed, accuracy mean +- std over seeds, and the paired difference to the reference
    with its 95% interval (``*`` when the interval excludes zero). Accuracies in percent."""
    metric = results.metric
    rows = []
    for summary in results.variants:
        mean, std = summary.mean(metric), summary.std(metric)
        difference = summary.difference
        if summary.baseline is None:
            delta = "reference"
        elif difference is None:
            delta = "no shared seeds"
        elif difference.n < 2:
            delta = f"{100 * difference.mean:+.2f} (1 seed)"
        else:
            mark = " *" if difference.significant else ""
            delta = f"{100 * difference.mean:+.2f} [{100 * difference.low:+.2f}, {100 * difference.high:+.2f}]{mark}"
        row = {"suite": results.label} if label_suite else {}
        row.update(
            {
                "variant": summary.variant,
                "seeds": len(summary.runs),
                "params_M": _fmt(summary.mean("params"), 3, 1e-6),
                "MMACs": _fmt(summary.mean("macs"), 2, 1e-6),
                **{f"{part}_MMACs": _fmt(summary.mean(f"{part}_macs"), 2, 1e-6) for part in _parts(results)},
                "infer_img_s": _fmt(summary.mean("infer_img_s"), 0),
                "train_img_s": _fmt(summary.mean("train_img_s"), 0),
                f"{metric}_%": f"{_fmt(mean, 2, 100)} +- {_fmt(std, 2, 100)}"
                if std is not None
                else _fmt(mean, 2, 100),
                "delta_vs_ref_95ci": delta,
            }
        )
        if any(s.baseline not in (None, results.reference) for s in results.variants):
            row["vs"] = summary.baseline or "-"  # per-variant baselines: say which
        rows.append(row)
    return rows


def problem_rows(results: SuiteResults) -> list[dict]:
    """Failed and interrupted runs: listed, never averaged in."""
    return [{"suite": results.label, "variant": r.variant, "seed": r.seed, "status": r.status} for r in results.not_ok]


@dataclass(frozen=True)
class SuitePower:
    """What a suite's paired comparisons could detect: ``seeds`` pairs, the typical spread ``sd`` of the per-seed
    differences (the median of the comparisons' standard deviations: one unstable arm does not speak for the rest),
    and the smallest detectable difference at that spread."""

    seeds: int
    sd: float
    detectable: float
    comparisons: int


def suite_power(results: SuiteResults) -> SuitePower | None:
    """The suite's detectable difference (paired t, alpha 0.05, power 0.8) at its seeds and observed paired spread;
    None when no comparison has 2 seeds or the spread is zero."""
    from hornet.analysis.stats.power import detectable_difference

    differences = [s.difference for s in results.variants if s.difference is not None and s.difference.n >= 2]
    if not differences:
        return None
    seeds = min(d.n for d in differences)
    sd = statistics.median(d.sd for d in differences)
    if sd <= 0:
        return None
    return SuitePower(seeds, sd, detectable_difference(sd, seeds), len(differences))


def power_line(results: SuiteResults, detect: float) -> str:
    """One plain line: the smallest difference the suite detects, and the seeds that would detect ``detect`` (in
    the metric's units, e.g. 0.01 = 1 point of accuracy)."""
    from hornet.analysis.stats.power import ALPHA, POWER, seeds_needed

    power = suite_power(results)
    if power is None:
        return f"{results.label}: no paired comparison with 2 or more seeds; its power cannot be stated"
    needed = seeds_needed(detect, power.sd)
    needed_text = f"{needed} seeds" if needed else "more than 10000 seeds"
    return (
        f"{results.label}: with {power.seeds} seeds and a paired spread of {100 * power.sd:.2f} points (sd of per-seed "
        f"differences, median over {power.comparisons} comparisons), the smallest difference this suite detects "
        f"(paired t, alpha {ALPHA}, power {POWER}) is {100 * power.detectable:.2f} points: a difference that is not "
        f"significant is not evidence of none above that. Detecting {100 * detect:.2f} points takes {needed_text}."
    )


def selection_line(results: SuiteResults, select: str | None = None) -> tuple[str, bool]:
    """(line, chosen on a test split): the variant with the best mean ``select`` (default: the validation twin of
    the suite's metric, ``best_val_<x>`` for ``test_<x>``) and its reported test metric. Choosing on a test column
    makes that test score an over-estimate; the second value says so, for a warning."""
    metric = results.metric
    select = select or "best_val_" + metric.removeprefix("test_")
    values = {s.variant: s.values(select) for s in results.variants if s.values(select)}
    if not values:
        return f"{results.label}: no variant has {select}; nothing to select on", False
    shared = set.intersection(*(set(v) for v in values.values()))  # compared on the same seeds, when there are any
    means = {v: statistics.fmean(x for seed, x in per_seed.items() if not shared or seed in shared)
             for v, per_seed in values.items()}  # fmt: skip
    chosen = max(means, key=means.get)
    summary = next(s for s in results.variants if s.variant == chosen)
    reported = summary.mean(metric)
    spread = summary.std(metric)
    reported_text = _fmt(reported, 2, 100) + (f" +- {_fmt(spread, 2, 100)}" if spread is not None else "")
    on = f" on seed{'s' if len(shared) > 1 else ''} {', '.join(map(str, sorted(shared)))}" if shared else ""
    runs = len(summary.runs)
    line = (
        f"{results.label}: selected on {select}{on}: {chosen} ({_fmt(means[chosen], 2, 100)}); its {metric} "
        f"{reported_text} over {runs} seed{'s' if runs > 1 else ''}"
    )
    return line, select.startswith("test_")

"""PNG plots (headless matplotlib): suite results (metric per variant, metric vs MACs, training curves) and the
interaction-order and ERF analyses."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; notebooks still show the returned figures inline

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from hornet.analysis.stats.results import SuiteResults, training_curves

__all__ = [
    "accuracy_figure", "curves_figure", "erf_figure", "erf_grid_figure", "figure_title", "interaction_figure",
    "pareto_figure", "pareto_front", "save_plots",
]  # fmt: skip


MIN_SPAN = 10.0  # percentage points: the least an accuracy axis spans, so a 1-point gap looks like one


def _percent(value: float | None) -> float:
    return float("nan") if value is None else 100 * value


def figure_title(suites: list[SuiteResults], what: str) -> str:
    """Every figure of a report is titled alike: the suites and what is drawn, then each suite's scale (with the
    caveat when it is not its study's longer schedule)."""
    lines = [f"{' vs '.join(s.label for s in suites)}: {what}"]
    for suite in suites:
        if suite.scale:
            caveat = " (not its longer schedule: a check of the study, not its answer)"
            scale = suite.scale.describe() + (caveat if suite.scale.reached_longer_schedule is False else "")
            lines.append(f"{suite.label}: {scale}" if len(suites) > 1 else scale)
    return "\n".join(textwrap.fill(line, 80) for line in lines)


def _honest_limits(values: list[float]) -> tuple[float, float]:
    """Axis limits around ``values`` (percent) spanning at least MIN_SPAN points, inside 0-100."""
    low, high = min(values), max(values)
    pad = max((MIN_SPAN - (high - low)) / 2, 0.1 * (high - low), 0.5)
    low, high = low - pad, high + pad
    if high > 100:
        low, high = low - (high - 100), 100.0
    return max(low, 0.0), high


def accuracy_figure(suites: list[SuiteResults]) -> Figure:
    """Per variant: every seed's score (small dots) and their mean +- std (large marker, bar); one colour per
    suite, on an axis spanning at least MIN_SPAN points."""
    figure, axes = plt.subplots(figsize=(max(5.5, 1.1 * max(len(s.variants) for s in suites) + 2), 4.2))
    width = 0.8 / len(suites)
    values = []
    for index, suite in enumerate(suites):
        colour = f"C{index}"
        for i, variant in enumerate(suite.variants):
            centre = i + (index - (len(suites) - 1) / 2) * width
            seeds = sorted(variant.values(suite.metric).items())
            points = [_percent(value) for _, value in seeds]
            offsets = [(k - (len(points) - 1) / 2) * min(0.06, width / (2 * len(points))) for k in range(len(points))]
            axes.scatter([centre + 0.12 + o for o in offsets], points, s=14, color=colour, alpha=0.6, zorder=2)
            mean, std = _percent(variant.mean(suite.metric)), _percent(variant.std(suite.metric) or 0.0)
            axes.errorbar([centre], [mean], yerr=[std], fmt="o", color=colour, markersize=7, capsize=4, zorder=3,
                          label=suite.label if i == 0 else None)  # fmt: skip
            values += [*points, mean - std, mean + std]
    first = suites[0]
    labels = [v.variant + (" (ref)" if v.variant == first.reference else "") for v in first.variants]
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_ylim(*_honest_limits(values))
    axes.set_ylabel(f"{first.metric} (%)")
    axes.grid(axis="y", alpha=0.3)
    seeds = sorted({len(v.runs) for s in suites for v in s.variants})
    what = f"{first.metric}, mean +- std over {'/'.join(map(str, seeds))} seeds (dots: each seed)"
    axes.set_title(figure_title(suites, what), fontsize=9)
    if len(suites) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower-or-equal cost and higher-or-equal accuracy), by cost."""
    front = []
    for i, (cost, accuracy) in enumerate(points):
        dominated = any(
            c <= cost and a >= accuracy and (c, a) != (cost, accuracy) for j, (c, a) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_figure(suites: list[SuiteResults]) -> Figure:
    """Mean test top-1 against MACs per image; the Pareto front (cheapest for its accuracy) joined and ringed."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for suite in suites:
        points = [(v.mean("macs") / 1e6, _percent(v.mean(suite.metric))) for v in suite.variants]
        axes.scatter([p[0] for p in points], [p[1] for p in points], label=suite.label, zorder=3)
        for (x, y), variant in zip(points, suite.variants, strict=True):
            axes.annotate(variant.variant, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=8)
        front = pareto_front(points)
        axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", alpha=0.6)
        axes.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=140, facecolors="none",
                     edgecolors="black", zorder=4)  # fmt: skip
    axes.set_xlabel("MMACs per image")
    axes.set_ylabel(f"{suites[0].metric} (%)")
    axes.set_ylim(*_honest_limits([y for suite in suites for v in suite.variants
                                   if (y := _percent(v.mean(suite.metric))) == y]))  # fmt: skip
    axes.grid(alpha=0.3)
    axes.set_title(figure_title(suites, f"mean {suites[0].metric} vs MACs (ringed: Pareto front)"), fontsize=9)
    if len(suites) > 1:
        axes.legend()
    figure.tight_layout()
    return figure


def curves_figure(suites: list[SuiteResults], column: str | None = None) -> Figure:
    """Per-epoch ``column`` from the runs' CSV logs, mean over seeds, one line per variant."""
    figure, axes = plt.subplots(figsize=(6, 4))
    column = column or "val/" + suites[0].metric.removeprefix("test_")
    for suite in suites:
        prefix = f"{suite.label}: " if len(suites) > 1 else ""
        for variant, epochs in training_curves(suite, column).items():
            xs = sorted(epochs)
            axes.plot(xs, [100 * statistics.fmean(epochs[x]) for x in xs], marker="o", label=prefix + variant)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{column} (%)")
    axes.set_title(figure_title(suites, f"training curves, {column} (mean over seeds)"), fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def save_plots(suites: list[SuiteResults], directory: str | Path) -> list[Path]:
    """Write accuracy.png, pareto.png and curves.png into ``directory``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in (("accuracy", accuracy_figure), ("pareto", pareto_figure), ("curves", curves_figure)):
        figure = build(suites)
        path = directory / f"{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def interaction_figure(
    curves: dict[str, tuple[list[float], list[float], list[float], list[float]]],
    band: str = "95% bootstrap over images",
    title: str = "interaction strength by order",
) -> Figure:
    """Normalised interaction strength J^(m) against m / n, one line per label with its band (what ``band`` says):
    ``{label: (m_over_n, J, low, high)}``; ``title`` (a suite's: figure_title) above."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, (xs, ys, low, high) in curves.items():
        (line,) = axes.plot(xs, ys, marker="o", markersize=3, label=label)
        axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    axes.set_xlabel("order m / n (share of the other cells present)")
    axes.set_ylabel("J(m) / mean over m")
    axes.set_title(f"{title}\nband: {band}", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def erf_figure(pictures: dict[tuple[int, int], torch.Tensor], title: str = "") -> Figure:
    """ERF pictures (log10(A + 1) / max) on a grid: a row per input size, a column per stage."""
    sizes = sorted({size for size, _ in pictures})
    stages = sorted({stage for _, stage in pictures})
    figure, axes = plt.subplots(len(sizes), len(stages), figsize=(2.4 * len(stages), 2.4 * len(sizes)), squeeze=False)
    for r, size in enumerate(sizes):
        for c, stage in enumerate(stages):
            axis = axes[r][c]
            axis.set_xticks([]), axis.set_yticks([])
            if (size, stage) in pictures:
                axis.imshow(pictures[(size, stage)].cpu().numpy(), cmap="RdYlGn", vmin=0, vmax=1)
            axis.set_title(f"stage {stage}, {size} px", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def erf_grid_figure(maps: dict[str, dict[int, torch.Tensor]], title: str) -> Figure:
    """ERF pictures side by side: a row per label (a variant, a model), a column per stage."""
    stages = sorted({stage for per in maps.values() for stage in per})
    # constrained layout keeps the two-line title clear of the stage headers however many rows (tight_layout did not)
    figure, axes = plt.subplots(len(maps), len(stages), figsize=(2.2 * len(stages), 2.2 * len(maps) + 0.6),
                                squeeze=False, layout="constrained")  # fmt: skip
    for r, (label, per) in enumerate(maps.items()):
        for c, stage in enumerate(stages):
            axis = axes[r][c]
            axis.set_xticks([]), axis.set_yticks([])
            if stage in per:
                axis.imshow(per[stage].cpu().numpy(), cmap="RdYlGn", vmin=0, vmax=1)
            if r == 0:
                axis.set_title(f"stage {stage}", fontsize=9)
        axes[r][0].set_ylabel(label, fontsize=8)
    figure.suptitle(title, fontsize=9)
    return figure

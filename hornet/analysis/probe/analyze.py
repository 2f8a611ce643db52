"""`hornet analyze interactions | erf`: the interaction-order and ERF analyses of one trained classifier, written as
CSV files and PNG figures into an output folder, with a progress bar."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hornet.analysis.probe.erf import erf_rows
from hornet.analysis.probe.interactions import (
    RATIOS,
    bootstrap_band,
    correctly_classified,
    interaction_orders,
    interaction_rows,
    neighbour_pairs,
    strength_curve,
)  # fmt: skip
from hornet.analysis.probe.trained import Trained
from hornet.analysis.stats.plots import erf_figure, erf_grid_figure, figure_title, interaction_figure
from hornet.files import write_atomic

__all__ = [
    "ERF_CSV", "ERF_MAPS", "INTERACTIONS_CSV", "STRENGTH_CSV", "analyze_erf", "analyze_interactions", "analyze_suite",
    "compare_models", "read_erf_maps", "read_strength", "smallest_size_maps", "suite_figures",
]  # fmt: skip

INTERACTIONS_CSV, STRENGTH_CSV, ERF_CSV = "interactions.csv", "interaction_strength.csv", "erf.csv"
ERF_MAPS = "erf_maps.npz"  # the ERF pictures, "<img_size>_<stage>" -> (H, W), for side-by-side suite figures
RUN_ANALYSIS = "analysis"  # the folder of a run's analyses: <run>/analysis/


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )  # fmt: skip


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)


def _evaluation_set(trained: Trained):
    data = trained.data
    data.setup("test")
    if data.test_set is None or len(data.test_set) == 0:
        raise ValueError(f"{type(data).__name__} has an empty test split: nothing to analyse")
    return data.test_set


def analyze_interactions(
    trained: Trained,
    output: str | Path,
    *,
    images: int = 10,
    grid: int = 7,
    pairs: int = 20,
    contexts: int = 16,
    ratios: Sequence[float] = RATIOS,
    batch_size: int = 512,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Path]:
    """J^(m) of ``trained`` on ``images`` correctly classified test images; writes interactions.csv (one row per
    image x pair x order), interaction_strength.csv (the curve with its 95% bootstrap band over images) and
    interactions.png. Returns the written paths."""
    if images < 1 or pairs < 1 or contexts < 1:
        raise ValueError(f"--images, --pairs and --contexts must be positive; got {images}, {pairs}, {contexts}")
    dataset = _evaluation_set(trained)
    height, width = dataset[0][0].shape[-2:]
    if not 2 <= grid <= min(height, width):
        raise ValueError(f"--grid must be between 2 and the image's side {min(height, width)}; got {grid}")
    model = trained.model.to(device).eval()
    chosen = correctly_classified(model, dataset, images, seed=seed, batch_size=batch_size)
    chosen = [(index, image.to(device), label) for index, image, label in chosen]
    orders = interaction_orders(grid * grid, ratios)
    per_image = len(neighbour_pairs(grid, pairs, np.random.default_rng(seed)))  # fewer on a small grid
    with _progress() as bar:
        task = bar.add_task("interactions (pairs x orders)", total=len(chosen) * per_image * len(orders))
        rows, samples, orders = interaction_rows(
            model, chosen, grid=grid, pairs=pairs, contexts=contexts, ratios=ratios, batch_size=batch_size, seed=seed,
            progress=lambda done: bar.advance(task, done),
        )  # fmt: skip
    curve = strength_curve(samples)
    low, high = bootstrap_band(samples, seed=seed)
    players = grid * grid
    strength = [
        {"m": m, "m_over_n": round(m / players, 4), "J": round(float(j), 6), "low": round(float(lo), 6),
         "high": round(float(hi), 6), "images": len(samples)}
        for m, j, lo, hi in zip(orders, curve, low, high)
    ]  # fmt: skip
    output = Path(output)
    _write_csv(output / INTERACTIONS_CSV, rows)
    _write_csv(output / STRENGTH_CSV, strength)
    figure = interaction_figure({trained.backbone: _curve_columns(strength)})
    figure.savefig(output / "interactions.png", dpi=100)
    return {"rows": output / INTERACTIONS_CSV, "strength": output / STRENGTH_CSV, "plot": output / "interactions.png"}


def _curve_columns(strength: Sequence[dict]) -> tuple[list[float], ...]:
    return tuple([float(row[key]) for row in strength] for key in ("m_over_n", "J", "low", "high"))


def read_strength(path: str | Path) -> tuple[list[float], ...]:
    """(m_over_n, J, low, high) from an interaction_strength.csv."""
    with Path(path).open() as handle:
        return _curve_columns(list(csv.DictReader(handle)))


def analyze_erf(
    trained: Trained,
    output: str | Path,
    *,
    images: int = 32,
    sizes: Sequence[int] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> dict[str, Path]:
    """The ERF of every stage of ``trained`` over ``images`` test images at each of ``sizes`` (default: the data's
    size and twice it); writes erf.csv (area ratios) and erf.png (the maps). Returns the written paths."""
    if images < 1:
        raise ValueError(f"--images must be positive; got {images}")
    dataset = _evaluation_set(trained)
    model = trained.model.to(device).eval()
    count = min(images, len(dataset))
    sizes = list(sizes or (trained.data.img_size, 2 * trained.data.img_size))

    def batches():
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            yield torch.stack([dataset[i][0] for i in range(start, stop)]).to(device)

    from hornet.analysis.probe.erf import stage_count

    with _progress() as bar:
        task = bar.add_task("ERF (sizes x stages)", total=len(sizes) * stage_count(model))
        rows, pictures = erf_rows(model, batches, sizes=sizes, progress=lambda done: bar.advance(task, done))
    output = Path(output)
    _write_csv(output / ERF_CSV, rows)
    maps = {f"{size}_{stage}": picture.cpu().numpy() for (size, stage), picture in pictures.items()}
    write_atomic(output / ERF_MAPS, lambda handle: np.savez_compressed(handle, **maps), binary=True)
    title = f"{trained.backbone}: ERF, log10(A+1)/max over {count} test images"
    erf_figure(pictures, title).savefig(output / "erf.png", dpi=100)
    return {"ratios": output / ERF_CSV, "plot": output / "erf.png"}


def read_erf_maps(path: str | Path) -> dict[tuple[int, int], torch.Tensor]:
    """(img_size, stage) -> ERF picture, from an erf_maps.npz."""
    with np.load(path) as maps:
        return {tuple(int(v) for v in key.split("_")): torch.from_numpy(maps[key]) for key in maps.files}


def smallest_size_maps(pictures: dict[tuple[int, int], torch.Tensor]) -> tuple[int, dict[int, torch.Tensor]]:
    """The smallest input size of ``read_erf_maps``'s pictures, and its pictures by stage (a figure's row)."""
    size = min(size for size, _ in pictures)
    return size, {stage: picture for (at, stage), picture in pictures.items() if at == size}


def analyze_suite(
    suite_dir: str | Path, *, interactions: dict | None = None, erf: dict | None = None, device: str = "cpu"
) -> dict[str, Path]:
    """Both analyses of every finished run of a suite, into ``<run>/analysis/``; an analysis whose files a published
    suite keeps exist already (the curve, the ERF maps: each written after the rest of its data) is not run again, so
    a suite published half-way with its analyses (``ablation.publish_dir``) resumes without its checkpoints. Then the
    suite-level files: interaction_strength.csv and erf.csv (one row per variant, seed and point) beside results.csv.
    ``interactions`` and ``erf`` are keyword arguments of analyze_interactions and analyze_erf."""
    from hornet.analysis.probe.trained import load_trained
    from hornet.analysis.stats.results import load_suite

    suite = load_suite(suite_dir)
    finished = [row for row in suite.rows if row.ok]
    if not finished:
        raise ValueError(f"{suite.path} has no finished runs to analyse")
    missing = [
        row for row in finished
        if any(_pending(suite.run_dir(row).path / RUN_ANALYSIS)) and suite.run_dir(row).best_checkpoint() is None
    ]  # fmt: skip
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(finished)} finished runs hold no checkpoint: {analysis_hint(suite)}"
        )
    strength_rows, erf_rows_all = [], []
    console = Console(stderr=True)
    for n, row in enumerate(finished, 1):
        run = suite.run_dir(row)
        output = run.path / RUN_ANALYSIS
        console.print(f"suite {suite.name}: analysing {row.variant}:{row.seed} ({n}/{len(finished)})", highlight=False)
        interactions_due, erf_due = _pending(output)
        if interactions_due:
            analyze_interactions(load_trained(run=run.path), output, device=device, **(interactions or {}))
        if erf_due:
            analyze_erf(load_trained(run=run.path), output, device=device, **(erf or {}))
        with (output / STRENGTH_CSV).open() as handle:
            strength_rows += [{"variant": row.variant, "seed": row.seed, **r} for r in csv.DictReader(handle)]
        with (output / ERF_CSV).open() as handle:
            erf_rows_all += [{"variant": row.variant, "seed": row.seed, **r} for r in csv.DictReader(handle)]
    folder = suite.path.parent
    _write_csv(folder / STRENGTH_CSV, strength_rows)
    _write_csv(folder / ERF_CSV, erf_rows_all)
    return {"strength": folder / STRENGTH_CSV, "erf": folder / ERF_CSV}


def _pending(output: Path) -> tuple[bool, bool]:
    """Whether the interactions and the ERF of a run's analysis folder are still to run: each is done once the file
    a published suite keeps of it (written after the rest of its data) exists."""
    return not (output / STRENGTH_CSV).is_file(), not (output / ERF_MAPS).is_file()


def suite_command(suite) -> str | None:
    """The command that made ``suite``'s runs, as its first run's meta.json recorded it."""
    for row in suite.rows:
        meta = suite.run_dir(row).path / "meta.json"
        if meta.is_file():
            argv = list(json.loads(meta.read_text()).get("argv") or [])[1:]
            if "--ablation.publish_dir" in argv:  # where it published as it ran: not part of making the runs
                at = argv.index("--ablation.publish_dir")
                del argv[at : at + 2]
            return "hornet " + " ".join(argv) if argv else None
    return None


def analysis_hint(suite) -> str:
    """What analysing ``suite`` takes: `hornet analyze suite` on its folder, or, for a suite whose runs keep no
    checkpoints (a published one), the command that makes the runs first."""
    folder = suite.path.parent
    if any(suite.run_dir(row).best_checkpoint() is not None for row in suite.rows if row.ok):
        return f"not analysed yet: hornet analyze suite {folder}"
    made_by = suite_command(suite)
    make = f"make them with `{made_by}`" if made_by else "run the suite"
    return (
        f"{folder} keeps its results but no checkpoints (a published suite), and the analysis needs the trained "
        f"runs: {make}, then `hornet analyze suite` on the suite's folder under your runs root"
    )


def suite_figures(suite, directory: str | Path) -> list[Path]:
    """For a suite analysed by ``analyze_suite``: interactions.png (J^(m) per variant, mean over seeds, band +- one
    std over seeds; one seed: its bootstrap band) and erf.png (a row per variant at the data's size, lowest seed).
    Returns the written paths (none when the suite has no analyses)."""
    import statistics

    import matplotlib.pyplot as plt

    folder, directory = suite.path.parent, Path(directory)
    paths = []
    if (folder / STRENGTH_CSV).is_file():
        with (folder / STRENGTH_CSV).open() as handle:
            rows = list(csv.DictReader(handle))
        curves, bands = {}, set()
        for variant in dict.fromkeys(r["variant"] for r in rows):
            points: dict[float, list[dict]] = {}
            for r in (r for r in rows if r["variant"] == variant):
                points.setdefault(float(r["m_over_n"]), []).append(r)
            xs = sorted(points)
            means = [statistics.fmean(float(r["J"]) for r in points[x]) for x in xs]
            if all(len(points[x]) > 1 for x in xs):
                spread = [statistics.stdev(float(r["J"]) for r in points[x]) for x in xs]
                low, high = [m - d for m, d in zip(means, spread)], [m + d for m, d in zip(means, spread)]
                bands.add("+- 1 std over seeds")
            else:
                low, high = [float(points[x][0]["low"]) for x in xs], [float(points[x][0]["high"]) for x in xs]
                bands.add("95% bootstrap over images")
            seeds = len({r["seed"] for r in rows if r["variant"] == variant})
            curves[f"{variant} ({seeds} seed{'s' if seeds > 1 else ''})"] = (xs, means, low, high)
        what = "interaction strength J(m) by order, mean over seeds"
        figure = interaction_figure(curves, band=" / ".join(sorted(bands)), title=figure_title([suite], what))
        directory.mkdir(parents=True, exist_ok=True)
        figure.savefig(directory / "interactions.png", dpi=120)
        plt.close(figure)
        paths.append(directory / "interactions.png")
    maps, sizes = {}, {}
    for variant in suite.variants:
        run = min((r for r in variant.runs), key=lambda r: r.seed)
        path = suite.run_dir(run).path / RUN_ANALYSIS / ERF_MAPS
        if path.is_file():
            sizes[variant.variant], maps[variant.variant] = smallest_size_maps(read_erf_maps(path))
    if maps:
        shown = sorted(set(sizes.values()))
        what = f"ERF per stage at {'/'.join(map(str, shown))} px, log10(A+1)/max (lowest seed)"
        figure = erf_grid_figure(maps, figure_title([suite], what))
        directory.mkdir(parents=True, exist_ok=True)
        figure.savefig(directory / "erf.png", dpi=120)
        plt.close(figure)
        paths.append(directory / "erf.png")
    return paths


def compare_models(
    trained: dict[str, Trained], analysis: str, output: str | Path, *, settings: dict | None = None,
    device: str = "cpu",
) -> dict[str, Path]:  # fmt: skip
    """One analysis (``interactions`` or ``erf``) of several models, each into ``output/<label>/``, and one figure
    of them all: ``compare_interactions.png`` (J(m) of each, its 95% bootstrap band over images) or
    ``compare_erf.png`` (a row of stage maps per model at the first size). ``settings`` are keyword arguments of
    analyze_interactions / analyze_erf. Returns the written paths."""
    import matplotlib.pyplot as plt

    if analysis not in ("interactions", "erf"):
        raise ValueError(f"analysis must be interactions or erf; got {analysis!r}")
    output = Path(output)
    curves, maps = {}, {}
    for label, model in trained.items():
        folder = output / label
        if analysis == "interactions":
            analyze_interactions(model, folder, device=device, **(settings or {}))
            curves[label] = read_strength(folder / STRENGTH_CSV)
        else:
            analyze_erf(model, folder, device=device, **(settings or {}))
            size, per_stage = smallest_size_maps(read_erf_maps(folder / ERF_MAPS))
            maps[f"{label} ({size} px)"] = per_stage
    data = next(iter(trained.values())).data
    where = f"{type(data).__name__}" + (f" {data.root}" if hasattr(data, "root") else "")
    if analysis == "interactions":
        what = f"interaction strength J(m) by order, {len(curves)} models on {where}"
        figure = interaction_figure(curves, title=what)
    else:
        figure = erf_grid_figure(maps, f"ERF per stage, log10(A+1)/max, {len(maps)} models on {where}")
    path = output / f"compare_{analysis}.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return {"figure": path}

"""`hornet report`, the statistics behind it, and both notebooks, on results of a tiny real suite run here."""

import os
import random
import statistics
from pathlib import Path

import pytest
import yaml

from hornet.analysis.stats.plots import pareto_front
from hornet.analysis.stats.power import detectable_difference, paired_power, seeds_needed
from hornet.analysis.stats.results import load_suite, paired_difference, suite_power
from hornet.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """A real 3-variant x 2-seed suite named order_ablation (1 epoch on synthetic data), plus one failed run."""
    root = tmp_path_factory.mktemp("runs")
    config = {
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "log_every_n_steps": 1},
        "model": {"backbone": "hornet_micro_gf"},
        "data": {
            "class_path": "hornet.data.SyntheticDataModule",
            "init_args": {"batch_size": 16, "train_size": 64, "val_size": 32, "test_size": 64, "noise": 3.0},
        },
        "ablation": {
            "name": "order_ablation",
            "output_dir": str(root / "order_ablation"),
            "seeds": [0, 1],
            "reference": "order_2345",
            "variants": [
                {"name": "order_1111", "overrides": {"model.backbone_kwargs.orders": [1, 1, 1, 1]}},
                {"name": "order_2345", "overrides": {"model.backbone_kwargs.orders": [2, 3, 4, 5]}},
                {"name": "wide_kernel", "overrides": {"model.backbone_kwargs.mixers": ["dw13", "dw13", "gf", "gf"]}},
                {"name": "diverges", "overrides": {"model.recipe.lr": 1e30}},
            ],
        },
    }
    path = root / "order_ablation.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["fit", "--config", str(path)]) == 0
    return root


def test_paired_interval_covers_a_known_difference():
    rng = random.Random(0)
    covered = 0
    for _ in range(200):
        seeds = range(5)
        base = {s: 0.9 + rng.gauss(0, 0.01) for s in seeds}
        shared = {s: rng.gauss(0, 0.01) for s in seeds}  # per-seed effects common to both arms cancel when paired
        reference = {s: base[s] + shared[s] for s in seeds}
        variant = {s: base[s] + shared[s] + 0.02 + rng.gauss(0, 0.003) for s in seeds}
        difference = paired_difference(variant, reference)
        covered += difference.low <= 0.02 <= difference.high
        assert difference.n == 5
    assert 180 <= covered <= 199  # a 95% interval: about 190 of 200


def test_paired_interval_with_zero_difference_is_not_significant_and_needs_shared_seeds():
    difference = paired_difference({0: 0.5, 1: 0.6, 2: 0.55}, {0: 0.52, 1: 0.58, 2: 0.55})
    assert difference.low < 0 < difference.high and not difference.significant
    assert paired_difference({0: 0.5}, {1: 0.5}) is None


def test_pareto_front():
    points = [(1.0, 80.0), (2.0, 85.0), (2.5, 84.0), (3.0, 85.0), (4.0, 90.0)]
    assert pareto_front(points) == [0, 1, 4]


def test_report_prints_rows_lists_failures_and_writes_plots(runs, capsys, tmp_path):
    suite = runs / "order_ablation"
    assert main(["report", str(suite), "--format", "markdown", "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    header, summary, problems = lines[0], lines[1:4], lines[5:]  # two tables: variants, then runs not averaged in
    assert "variant" in header and "test_top1_%" in header and "delta_vs_ref_95ci" in header
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ") for line in summary}
    assert list(rows) == ["order_1111", "order_2345", "wide_kernel"]  # the failed variant is not averaged in
    columns = header.strip("| ").split(" | ")
    results = load_suite(suite)
    for variant, cells in rows.items():
        row = dict(zip(columns, cells))
        runs = next(v for v in results.variants if v.variant == variant).runs
        top1 = [100 * r.value("test_top1") for r in runs]
        assert (
            row["seeds"] == "2"
            and row["test_top1_%"] == f"{statistics.fmean(top1):.2f} +- {statistics.stdev(top1):.2f}"
        )
    assert rows["order_2345"][-1] == "reference"
    low, high = (float(x) for x in rows["order_1111"][-1].split("[")[1].split("]")[0].split(", "))
    difference = next(v for v in results.variants if v.variant == "order_1111").difference
    assert (low, high) == (round(100 * difference.low, 2), round(100 * difference.high, 2))  # a 2-seed interval
    assert [line.strip("| ").split(" | ")[1:3] for line in problems] == [["diverges", "0"], ["diverges", "1"]]
    assert all("failed: FloatingPointError: non-finite training loss" in line for line in problems)
    for name in ("accuracy", "pareto", "curves"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    results = load_suite(suite)
    assert [v.variant for v in results.variants] == ["order_1111", "order_2345", "wide_kernel"]  # failed: not averaged
    assert len(results.not_ok) == 2


def test_report_compares_several_suites_and_rejects_bad_input(runs, capsys):
    suite = runs / "order_ablation"
    assert main(["report", str(suite), str(suite / "results.csv"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("suite,variant,seeds")
    summary = [line for line in lines if line.startswith("order_ablation,") and ",diverges," not in line]
    assert len(summary) == 6  # 3 variants from each path; the failed runs are listed in a second table
    assert main(["report", str(runs / "nothing")]) == 2
    assert "no results.csv" in capsys.readouterr().err
    assert main(["report", str(suite), "--reference", "nope"]) == 2
    assert "reference variant 'nope' is not in" in capsys.readouterr().err


def _execute(name: str, env: dict, tmp_path: Path):
    """The notebook executed headless; skips where the dev extras are absent (a GPU machine's own python, whose
    `make test-gpu` collects every module)."""
    nbformat = pytest.importorskip("nbformat")
    NotebookClient = pytest.importorskip("nbclient").NotebookClient
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return notebook


def _outputs(notebook) -> tuple[str, int]:
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += "image/png" in data
            text.append(data.get("text/markdown", "") + data.get("text/plain", "") + output.get("text", ""))
    return "\n".join(text), images


def test_ablation_notebook_executes_headless(runs, tmp_path):
    notebook = _execute("ablation_analysis", {"HORNET_RESULTS": str(runs / "order_ablation")}, tmp_path)
    text, images = _outputs(notebook)
    assert "| variant | seeds | params_M |" in text and "| order_2345 | 2 |" in text and "| reference |" in text
    assert "| variant | epoch 1 | epoch 2 |" in text  # the per-epoch table behind the curves
    assert "| diverges | 0 | failed: FloatingPointError" in text  # failed runs listed, not averaged in
    assert images == 3


def test_paper_tables_notebook_executes_headless(runs, tmp_path):
    import csv

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "order_ablation").symlink_to(runs / "order_ablation")
    # the user's own ADE20K run of one backbone, as results.csv would hold it (two seeds of test mIoU)
    with (runs / "order_ablation" / "results.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["variant"] == "order_2345"]
    for row, miou in zip(rows, ("0.4810", "0.4850")):
        row["test_mIoU"] = miou
    (folder / "ade20k_hornet_tiny_7x7").mkdir()
    with (folder / "ade20k_hornet_tiny_7x7" / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = runs / "order_ablation" / "order_2345" / "seed0"
    env = {"HORNET_RUNS": str(folder), "HORNET_RUN": str(run), "HORNET_SWEEP_IMAGES": "64"}
    notebook = _execute("paper_tables", env, tmp_path)
    text, images = _outputs(notebook)
    assert "hornet_large_gf_img384" in text and "(paper, reported)" in text  # Table 1 with labelled top-1
    assert "Interaction order per stage" in text and "order_1111" in text  # the user's suite, laid out
    assert "smallest difference this suite detects" in text  # with its power
    assert "_Not run yet:_ `hornet fit --config experiments/kernel_ablation.yaml`" in text
    assert "| hornet_tiny_7x7 | 512 | 48.1 | 48.9 | 52 | 926 | 48.3 +- 0.3 (2 seeds) |" in text  # release | yours
    assert "| hornet_large_gf | 56.0 | 48.6 | 259 | 1358 | - |" in text  # COCO, no run of yours
    assert "--ablation.name coco_hornet_tiny_7x7 --model.init_args.backbone hornet_tiny_7x7" in text
    assert "_Not run yet:_ `hornet fit --config experiments/horfpn_detection_ablation.yaml`" in text
    assert "| img_size | top1_% | images |" in text and images == 1


def test_paper_tables_notebook_runs_in_a_fresh_clone_without_any_runs(tmp_path):
    empty = tmp_path / "no_runs"
    empty.mkdir()
    notebook = _execute("paper_tables", {"HORNET_RUNS": str(empty)}, tmp_path)  # no suites, no default run
    text, images = _outputs(notebook)
    assert "_Not run yet:_" in text and "_No trained run at_" in text and images == 0
    assert "| hornet_base_gf | 640 | 50.5 | 50.9 | 126 | 1171 | - |" in text  # the release's rows all the same


def test_notebooks_run_in_a_fresh_clone_on_the_published_results(tmp_path):
    """No runs/ at all: both notebooks read the committed results/ (the order ablation, the HorFPN suites)."""
    published = ROOT / "results"
    if not (published / "order_ablation" / "results.csv").is_file():
        pytest.fail("results/order_ablation is not published (hornet publish runs/order_ablation)")
    previous = os.environ.pop("HORNET_RUNS", None), os.environ.pop("HORNET_RESULTS", None)
    own = (ROOT / "runs").exists()  # a developer's own runs come first; point the notebooks at results/ then
    try:
        env = {"HORNET_RESULTS": str(published / "order_ablation")} if own else {}
        text, images = _outputs(_execute("ablation_analysis", env, tmp_path))
        assert "runs from results/order_ablation" in text and "| order_2345 | 3 |" in text and images >= 3
        text, _ = _outputs(_execute("paper_tables", {"HORNET_RUNS": str(published)} if own else {}, tmp_path))
        assert "(`results/order_ablation" in text and ", reference order_2345)" in text  # cpu_full first, if published
        long_first = "HorFPN vs UPerNet, semantic segmentation: test_mIoU (`results/horfpn_ablation_long`"
        assert long_first in text  # a dense suite's longer schedule comes first when published
        assert "HorFPN vs FPN, Mask R-CNN: test_bbox_mAP (`results/horfpn_detection_ablation_long`" in text
    finally:
        for key, value in zip(("HORNET_RUNS", "HORNET_RESULTS"), previous):
            if value is not None:
                os.environ[key] = value


def test_analyze_suite_is_resumable_and_the_report_draws_its_figures(runs, capsys, tmp_path):
    import csv

    suite = runs / "order_ablation"
    args = ["analyze", "suite", str(suite), "--images", "2", "--grid", "3", "--pairs", "2", "--contexts", "2"]
    args += ["--erf-images", "2"]
    assert main(args) == 0
    rows = list(csv.DictReader((suite / "interaction_strength.csv").open()))
    finished = {(v, s) for v in ("order_1111", "order_2345", "wide_kernel") for s in ("0", "1")}  # not the failed one
    assert {(r["variant"], r["seed"]) for r in rows} == finished
    erf = list(csv.DictReader((suite / "erf.csv").open()))
    assert {(r["variant"], r["seed"]) for r in erf} == finished and {r["stage"] for r in erf} == {"1", "2", "3", "4"}
    done = suite / "order_1111" / "seed0" / "analysis" / "interactions.csv"
    before = done.stat().st_mtime_ns
    assert main(args) == 0  # resumed: every run is analysed already, none again
    assert done.stat().st_mtime_ns == before
    # a suite published half-way keeps each run's analysis data but no checkpoints or pictures: still analysed
    import shutil

    published = shutil.copytree(suite, tmp_path / "published" / "order_ablation")
    for run in published.glob("*/seed*"):
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
        for picture in run.glob("analysis/*.png"):
            picture.unlink()
    assert main([*args[:2], str(published), *args[3:]]) == 0
    assert (published / "order_1111" / "seed0" / "analysis" / "interactions.csv").stat().st_mtime_ns == before
    assert main(["report", str(suite), "--plots", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "interactions.png").stat().st_size > 0
    assert (tmp_path / "plots" / "erf.png").stat().st_size > 0


def test_each_variant_is_compared_with_its_own_baseline_when_the_suite_names_one(tmp_path, capsys):
    """A placement-style suite: each gnConv arm against its own plain host, paired by seed (hand-computed)."""
    import csv
    import json

    header = ["suite", "variant", "seed", "overrides", "config_hash", "commit", "params", "macs", "infer_img_s",
              "train_img_s", "peak_mem_mb", "epochs", "wall_s", "status", "test_top1"]  # fmt: skip
    top1 = {"convnext_plain": (0.80, 0.82, 0.81), "convnext_gnconv": (0.83, 0.84, 0.85),
            "vit_plain": (0.70, 0.72, 0.74), "vit_gnconv": (0.71, 0.72, 0.73)}  # fmt: skip
    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for variant, values in top1.items():
            for seed, value in enumerate(values):
                writer.writerow(["placement", variant, seed, "{}", "h", "c", 1000, 2000, 1, 1, 1, 2, 10, "ok", value])
    variants = [{"name": v, "overrides": {}, "baseline": v.replace("gnconv", "plain") if "gnconv" in v else None}
                for v in top1]  # fmt: skip
    spec = {"name": "placement", "reference": "convnext_plain", "variants": variants, "metric": "test_top1"}
    (tmp_path / "suite.json").write_text(json.dumps(spec))
    results = {s.variant: s for s in load_suite(tmp_path).variants}
    assert results["convnext_gnconv"].baseline == "convnext_plain"
    assert results["convnext_gnconv"].difference.mean == pytest.approx(0.03)  # (3 + 2 + 4) / 3 points
    assert results["vit_gnconv"].baseline == "vit_plain" and results["vit_gnconv"].difference.mean == pytest.approx(0)
    assert results["vit_plain"].baseline == "convnext_plain"  # no baseline of its own: the suite's reference
    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert ",vs" in out.splitlines()[0] and "convnext_plain" in out
    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    # power: per-seed differences convnext (3, 2, 4), vit (1, 0, -1), vit_plain vs the reference (-10, -10, -7)
    # points have sds 1, 1 and sqrt(3): median 1 point over 3 seeds
    power = suite_power(load_suite(tmp_path))
    assert power.seeds == 3 and power.comparisons == 3 and power.sd == pytest.approx(0.01, rel=1e-6)
    assert power.detectable == pytest.approx(detectable_difference(0.01, 3), rel=1e-6)
    assert power.detectable == pytest.approx(0.032640, rel=1e-4)  # 3.264 sd: 3 pairs need a large effect
    assert "smallest difference this suite detects" in capsys.readouterr().err  # beside CSV: on stderr
    assert main(["report", str(tmp_path), "--select", "test_top1"]) == 0
    out, err = capsys.readouterr()
    assert "selected on test_top1 on seeds 0, 1, 2: convnext_gnconv (84.00)" in " ".join(out.split())
    assert "warning: placement is selected on a test column" in err  # choosing on test is flagged
    everything_vs_reference = {s.variant: s for s in load_suite(tmp_path, reference="vit_plain").variants}
    assert everything_vs_reference["convnext_gnconv"].baseline == "vit_plain"  # an explicit reference wins


def test_selection_compares_variants_on_the_seeds_they_share_and_reports_all_seeds_of_the_chosen(tmp_path):
    """A sweep run at seed 0, its chosen setting then run at seeds 1 and 2: the choice stays the seed-0 one."""
    import csv

    from hornet.analysis.stats.results import selection_line

    rows = [("a", 0, 0.90, 0.91), ("a", 1, 0.80, 0.81), ("a", 2, 0.80, 0.82), ("b", 0, 0.89, 0.95)]
    with (tmp_path / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["suite", "variant", "seed", "status", "best_val_top1", "test_top1"])
        writer.writerows(("sweep", v, seed, "ok", val, test) for v, seed, val, test in rows)
    line, on_test = selection_line(load_suite(tmp_path))
    assert line == "sweep: selected on best_val_top1 on seed 0: a (90.00); its test_top1 84.67 +- 5.51 over 3 seeds"
    assert not on_test


def test_detectable_difference_has_the_stated_power_by_simulation_and_the_normal_limit():
    import numpy as np
    from scipy import stats

    delta = detectable_difference(1.0, 3)  # sd 1, 3 seeds
    assert paired_power(delta, 1.0, 3) == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(0)
    samples = rng.normal(delta, 1.0, size=(40_000, 3))  # 40k simulated 3-seed suites with that true difference
    rejected = stats.ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.01)
    # many seeds: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n) = 2.8016 / sqrt(200) = 0.1981
    assert detectable_difference(1.0, 200) == pytest.approx(0.1981, rel=0.005)
    assert seeds_needed(delta, 1.0) == 3 and seeds_needed(delta / 2, 1.0) > 3


def test_report_states_what_each_suite_could_detect_and_selects_on_validation(runs, capsys):
    assert main(["report", str(runs / "order_ablation")]) == 0
    out, err = capsys.readouterr()
    out = " ".join(out.split())
    assert "selected on best_val_top1 on seeds 0, 1:" in out and "warning" not in err  # validation by default
    assert "order_ablation: with 2 seeds" in out and "smallest difference this suite detects" in out
    assert "Detecting 1.00 points takes" in out


def test_a_published_suite_reports_the_same_table_and_resumes_elsewhere_without_retraining(runs, capsys, tmp_path):
    """`hornet publish` copies the small files only; `hornet report` on the copy prints the same table; a suite
    pointed at the copy skips every published run; ablation.publish_dir publishes as runs land."""
    import json
    import shutil

    suite = runs / "order_ablation"
    assert main(["publish", str(suite), "--to", str(tmp_path / "results")]) == 0
    published = tmp_path / "results" / "order_ablation"
    assert "published 8 runs to" in capsys.readouterr().out
    names = {p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()}
    assert {"suite.json", "results.csv", "order_2345/seed0/result.json", "order_2345/seed0/metrics.csv"} <= names
    assert not [n for n in names if "checkpoints" in n or n.endswith((".ckpt", ".png")) or "tfevents" in n]
    assert main(["publish", str(suite), "--to", str(tmp_path / "results")]) == 0
    assert " 0 files copied" in capsys.readouterr().out  # idempotent

    assert main(["report", str(suite), "--format", "csv"]) == 0
    original = capsys.readouterr()
    assert main(["report", str(published), "--format", "csv"]) == 0
    copy = capsys.readouterr()
    assert copy.out == original.out and "order_2345" in copy.out  # the same rows, to the last digit
    assert copy.err.replace(str(published), "SUITE") == original.err.replace(str(suite), "SUITE")  # power, selection

    elsewhere = tmp_path / "new_machine" / "order_ablation"
    shutil.copytree(published, elsewhere)
    note = "a smoke check, the conclusion is another command"
    args = ["fit", "--config", str(runs / "order_ablation.yaml"), "--ablation.output_dir", str(elsewhere)]
    assert main([*args, "--ablation.note", note]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert note in said and "scale: 2 epochs, 64 training images, 2 seeds" in said  # read from the runs' configs
    assert not list(elsewhere.rglob("*.ckpt"))  # nothing trained again
    assert json.loads((elsewhere / "suite.json").read_text())["note"] == note
    assert main(["report", str(elsewhere)]) == 0
    assert f"order_ablation: {note}" in " ".join(capsys.readouterr().out.split())

    before = (elsewhere / "diverges" / "seed0" / "result.json").read_text()
    retry = [*args, "--ablation.retry_failed", "true", "--ablation.only", "diverges:0"]
    assert main([*retry, "--ablation.publish_dir", str(tmp_path / "live")]) == 0
    assert "published 8 runs to" in " ".join(capsys.readouterr().err.split())
    live = json.loads((tmp_path / "live" / "diverges" / "seed0" / "result.json").read_text())
    assert live["status"].startswith("failed") and live != json.loads(before)  # the rerun, published as it landed


def test_publish_rejects_a_folder_that_is_not_a_suite(tmp_path, capsys):
    assert main(["publish", str(tmp_path)]) == 2
    assert "not a suite directory" in capsys.readouterr().err


def test_suites_that_share_a_name_are_labelled_by_their_folder_everywhere(capsys):
    paths = [str(ROOT / "results" / "order_ablation_cpu_full"), str(ROOT / "results" / "order_ablation")]
    assert main(["report", *paths, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    suites = {row.split(",")[0] for row in out.strip().splitlines()[1:]}
    assert suites == {"order_ablation_cpu_full", "order_ablation"}
    lines = [line for line in err.splitlines() if line.startswith("order_ablation")]  # power and selection lines
    assert {line.split(":")[0] for line in lines} == {"order_ablation_cpu_full", "order_ablation"}, lines


def test_publish_refuses_runs_of_another_configuration_unless_replace(tmp_path, capsys):
    import json
    import shutil

    source = tmp_path / "runs" / "scale_ablation"
    shutil.copytree(ROOT / "results" / "scale_ablation", source)
    to = ["--to", str(tmp_path / "results")]
    assert main(["publish", str(source), *to]) == 0
    target = tmp_path / "results" / "scale_ablation"
    assert main(["publish", str(source), *to]) == 0  # the same runs again: fine (it follows a suite run by run)
    # the suite rerun with another configuration, with fewer seeds: its runs are not the published ones
    shutil.rmtree(source / "s_1" / "seed2")
    result = source / "s_1" / "seed0" / "result.json"
    result.write_text(json.dumps({**json.loads(result.read_text()), "config_hash": "0" * 16}))
    capsys.readouterr()
    assert main(["publish", str(source), *to]) == 2
    err = capsys.readouterr().err
    assert "holds 2 runs of another configuration" in err and "--replace" in err and len(err.strip().splitlines()) == 1
    assert main(["publish", str(source), *to, "--replace"]) == 0
    published = {p.parent.relative_to(target) for p in target.glob("*/seed*/result.json")}
    assert published == {p.parent.relative_to(source) for p in source.glob("*/seed*/result.json")}  # no stale run
    assert json.loads((target / "s_1" / "seed0" / "result.json").read_text())["config_hash"] == "0" * 16


def test_analysing_a_published_suite_says_which_command_makes_its_runs(capsys):
    """A published suite keeps no checkpoints: the analysis needs the runs, and the message says how to make them."""
    assert main(["analyze", "suite", str(ROOT / "results" / "order_ablation_cpu_full")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    made_by = "hornet fit --config experiments/order_ablation.yaml --config experiments/scale/cpu_full.yaml`"
    assert "no checkpoints (a published suite)" in err and made_by in err and "publish_dir" not in err


def test_a_report_states_the_suite_s_scale_from_its_runs_configs_and_the_caveat_short_of_its_longer_schedule(capsys):
    """The scale comes from the runs' configs, so an override is described as it ran; a suite that is not at its
    study's longer schedule says that it checks the study, not its answer (its answer can reverse: the kernel
    ablation's smoke table stars gf_all, its longer schedule dw3)."""
    assert main(["report", str(ROOT / "results" / "kernel_ablation")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "kernel_ablation: scale: 2 epochs, 20,000 training images, 3 seeds, not the study's longer schedule" in out
    assert "a check that the study runs, not its answer" in out and "experiments/scale/cpu_full.yaml" in out
    assert main(["report", str(ROOT / "results" / "kernel_ablation_cpu_full")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "scale: 5 epochs, the full training split, 3 seeds (the study's longer schedule)" in out
    assert "not its answer" not in out

    import json

    from hornet.analysis.stats.scale import suite_scale

    config = yaml.safe_load((ROOT / "results/kernel_ablation_cpu_full/dw3/seed0/config.yaml").read_text())
    longer = json.loads((ROOT / "results/kernel_ablation_cpu_full/suite.json").read_text())["longer_schedule"]
    config["trainer"]["max_epochs"] = 1  # hornet fit ... --trainer.max_epochs 1 --data.init_args.limit_train 1000
    config["data"]["init_args"]["limit_train"] = 1000
    scale = suite_scale([config, config], [0, 1], longer)
    assert scale.describe() == "1 epoch, 1,000 training images, 2 seeds"
    assert "not the study's longer schedule (limit_train=null, max_epochs=5)" in scale.line()
    reordered = {**longer, "settings": dict(reversed(list(longer["settings"].items())))}  # as another writer stores it
    assert suite_scale([config, config], [0, 1], reordered).line() == scale.line()


def test_the_accuracy_figure_shows_every_seed_on_an_axis_that_does_not_exaggerate_and_says_what_it_is():
    from hornet.analysis.stats.plots import MIN_SPAN, accuracy_figure

    suite = load_suite(ROOT / "results" / "kernel_ablation")
    axes = accuracy_figure([suite]).axes[0]
    from matplotlib.collections import PathCollection

    dots = [y for c in axes.collections if isinstance(c, PathCollection) for _, y in c.get_offsets()]  # the seeds
    expected = sorted(100 * run.value("test_top1") for variant in suite.variants for run in variant.runs)
    assert sorted(float(y) for y in dots) == pytest.approx(expected)  # 18 runs, 18 dots
    low, high = axes.get_ylim()
    assert high - low >= MIN_SPAN and low > 0  # the 1.3-point spread of the means fills under a seventh of it
    title = axes.get_title()
    assert "kernel_ablation: test_top1, mean +- std over 3 seeds" in title
    assert "2 epochs, 20,000 training images, 3 seeds (not its longer schedule" in " ".join(title.split())

"""Ablation suites: the spec, a whole suite end to end, resumption, refusal of changed configs, signals, array jobs."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from signal_at_step import signal_at_step

from hornet.ablation import AblationConfig, AblationVariant, plan_runs, select_runs, variant_config
from hornet.ablation.store import RunLock, rebuild_results
from hornet.cli import main
from hornet.runs import RunDir, RunResult, class_args, config_hash

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "experiments").glob("*_ablation.yaml"))


def _suite_file(tmp_path, *, train_size=64, epochs=1, seeds=(0,), orders3=(3, 3, 3, 3), order3_callbacks=None) -> Path:
    order3 = {"model.backbone_kwargs.orders": list(orders3)}
    if order3_callbacks:
        order3["trainer.callbacks"] = order3_callbacks
    config = {
        "trainer": {"max_epochs": epochs, "enable_progress_bar": False, "log_every_n_steps": 1},
        "model": {"backbone": "hornet_micro_7x7"},
        "data": {
            "class_path": "hornet.data.SyntheticDataModule",
            "init_args": {"batch_size": 16, "train_size": train_size, "val_size": 32, "test_size": 32},
        },
        "ablation": {
            "name": "tiny",
            "output_dir": str(tmp_path / "suite"),
            "seeds": list(seeds),
            "reference": "order2",
            "variants": [
                {"name": "order2", "overrides": {"model.backbone_kwargs.orders": [2, 2, 2, 2]}},
                {"name": "order3", "overrides": order3},
                {"name": "lr_low", "overrides": {"model.recipe.lr": 1e-4}},
            ],
        },
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _rows(tmp_path) -> list[dict]:
    with (tmp_path / "suite" / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def _mtimes(tmp_path) -> dict[str, int]:
    return {
        str(p.relative_to(tmp_path)): p.stat().st_mtime_ns for p in (tmp_path / "suite").glob("*/seed*/result.json")
    }


# --- the spec ---------------------------------------------------------------------------------------------------
def test_variant_config_deep_merges_dotted_overrides():
    base = {
        "seed_everything": 0,
        "run_name": "x",
        "model": {
            "class_path": "hornet.lit.ClassificationModule",
            "init_args": {"backbone": "hornet_micro_gf", "backbone_kwargs": None, "lr": 0.004},
        },
        "data": {"class_path": "hornet.data.FashionMNISTDataModule", "init_args": {"batch_size": 128, "img_size": 32}},
    }
    variant = AblationVariant("v", {"model.backbone_kwargs.orders": [3, 3, 3, 3], "data.batch_size": 64})
    config = variant_config(base, variant, seed=7)
    expected = {"backbone": "hornet_micro_gf", "backbone_kwargs": {"orders": [3, 3, 3, 3]}, "lr": 0.004}
    assert config["model"]["init_args"] == expected  # model.X -> model.init_args.X, as for the data
    assert config["data"]["init_args"] == {"batch_size": 64, "img_size": 32}  # data.X -> data.init_args.X
    assert config["seed_everything"] == 7 and "run_name" not in config
    assert base["data"]["init_args"]["batch_size"] == 128  # the base is not modified
    assert config_hash(config) != config_hash(variant_config(base, AblationVariant("v", {}), seed=7))


def test_run_list_and_only_selection():
    spec = AblationConfig(name="s", variants=[AblationVariant("a"), AblationVariant("b")], seeds=[0, 1, 2])
    runs = plan_runs(spec)
    assert [r.key for r in runs] == ["a:0", "a:1", "a:2", "b:0", "b:1", "b:2"] and spec.reference == "a"
    assert [r.key for r in select_runs(runs, 4)] == ["b:1"]
    assert [r.key for r in select_runs(runs, "4")] == ["b:1"]
    assert [r.key for r in select_runs(runs, "b")] == ["b:0", "b:1", "b:2"]
    assert [r.key for r in select_runs(runs, "a:2")] == ["a:2"]
    with pytest.raises(ValueError, match=r"out of range: the suite has runs 0..5"):
        select_runs(runs, 6)
    with pytest.raises(ValueError, match="matches no run"):
        select_runs(runs, "c:0")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(variants=[]), "ablation.variants is empty"),
        (dict(variants=[AblationVariant("a"), AblationVariant("a")]), "duplicate names"),
        (dict(variants=[AblationVariant("a/b")]), "not a folder-safe name"),
        (dict(variants=[AblationVariant("a")], reference="z"), "ablation.reference 'z' is not a variant"),
        (dict(variants=[AblationVariant("a")], seeds=[1, 1]), "distinct integers"),
    ],
)
def test_bad_ablation_sections_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AblationConfig(name="s", **kwargs)


def test_run_lock_excludes_live_owners_and_takes_over_stale_ones(tmp_path):
    run = RunDir(tmp_path)
    first = RunLock(run)
    assert first.acquire()
    (tmp_path / ".lock").write_text("somehost-elsewhere 1\n")  # another host: respected
    assert not RunLock(run).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (tmp_path / ".lock").write_text(f"{socket.gethostname()} {dead.pid}\n")  # a dead process here: stale
    second = RunLock(run)
    assert second.acquire() and second.holder() == second.owner
    second.release()
    assert not (tmp_path / ".lock").exists()


def _race_for_the_lock(run_path, start, outcomes):
    start.wait()  # every contender calls acquire at once
    lock = RunLock(RunDir(run_path))
    won = lock.acquire()
    outcomes.put(won)
    start.wait()  # the winner holds it until every contender has tried


@pytest.mark.parametrize("left_by", ["nobody", "a dead process"])
def test_contenders_starting_at_once_take_a_run_exactly_once(tmp_path, left_by):
    """Workers of a suite start together and all reach for its first run (also over a lock its killed predecessor
    left): one of them takes it, every time."""
    import multiprocessing
    import socket

    context = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for attempt in range(15):
        run_path = tmp_path / f"run{attempt}"
        run_path.mkdir()
        if left_by == "a dead process":
            (run_path / ".lock").write_text(f"{socket.gethostname()} {dead.pid}\n")
        start, outcomes = context.Barrier(6), context.Queue()
        contenders = [context.Process(target=_race_for_the_lock, args=(run_path, start, outcomes)) for _ in range(6)]
        for process in contenders:
            process.start()
        won = [outcomes.get(timeout=30) for _ in contenders]
        for process in contenders:
            process.join(timeout=30)
        assert sum(won) == 1, f"attempt {attempt}: {sum(won)} of 6 contenders took the run"


def test_results_csv_is_rebuilt_in_run_order(tmp_path):
    for variant, seed in (("b", 0), ("a", 1), ("a", 0)):
        run = RunDir(tmp_path / variant / f"seed{seed}")
        run.path.mkdir(parents=True)
        scores = {"test_top1": 0.5, "test_top1_ema": None}
        run.write_result(RunResult("s", variant, seed, scores=scores, status="ok"))
    path = rebuild_results(tmp_path, [("a", 0), ("a", 1), ("b", 0)])
    rows = list(csv.DictReader(path.open()))
    assert [(r["variant"], r["seed"]) for r in rows] == [("a", "0"), ("a", "1"), ("b", "0")]
    assert "test_top1" in rows[0] and "test_top1_ema" not in rows[0]  # a score column only when some run has one
    assert RunResult.from_row(rows[0]) == RunResult("s", "a", 0, scores={"test_top1": 0.5}, status="ok")


# --- a whole suite ----------------------------------------------------------------------------------------------
def test_suite_runs_resumes_and_refuses_changed_configs(tmp_path, capsys):
    suite = _suite_file(tmp_path)
    assert main(["fit", "--config", str(suite)]) == 0
    rows = _rows(tmp_path)
    assert [(r["variant"], r["status"]) for r in rows] == [("order2", "ok"), ("order3", "ok"), ("lr_low", "ok")]
    for row in rows:
        for column in ("params", "macs", "infer_img_s", "train_img_s", "peak_mem_mb", "best_val_top1", "test_top1"):
            assert float(row[column]) > 0, column
        assert 0 < float(row["test_top1"]) <= 1 and 0 < float(row["best_val_top1"]) <= 1
        assert row["epochs"] == "1" and len(row["config_hash"]) == 16
    assert [json.loads(r["overrides"]) for r in rows] == [
        {"model.backbone_kwargs.orders": [2, 2, 2, 2]}, {"model.backbone_kwargs.orders": [3, 3, 3, 3]},
        {"model.recipe.lr": 1e-4},
    ]  # fmt: skip
    assert int(rows[1]["params"]) > int(rows[0]["params"])  # order 3 has more projections than order 2
    alone = tmp_path / "suite" / "order3" / "seed0" / "config.yaml"
    assert class_args(yaml.safe_load(alone.read_text())["model"])["backbone_kwargs"] == {"orders": [3, 3, 3, 3]}

    before = _mtimes(tmp_path)
    assert main(["fit", "--config", str(suite)]) == 0  # everything finished: nothing runs again
    assert _mtimes(tmp_path) == before and len(_rows(tmp_path)) == 3
    assert capsys.readouterr().err.count("already done, skipped") == 3

    (tmp_path / "suite" / "order3" / "seed0" / "result.json").unlink()
    assert main(["fit", "--config", str(suite)]) == 0  # only the deleted one runs again
    after = _mtimes(tmp_path)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"suite/order3/seed0/result.json"} and len(_rows(tmp_path)) == 3

    changed_suite = _suite_file(tmp_path, orders3=(3, 3, 3, 4))
    assert main(["fit", "--config", str(changed_suite)]) == 2
    assert "finished runs whose config changed since they ran: order3:0" in capsys.readouterr().err
    assert (
        main(["fit", "--config", str(changed_suite), "--ablation.only", "order3", "--ablation.rerun_changed", "true"])
        == 0
    )
    config = yaml.safe_load((tmp_path / "suite" / "order3" / "seed0" / "config.yaml").read_text())
    assert class_args(config["model"])["backbone_kwargs"]["orders"] == [3, 3, 3, 4]


def test_failed_variant_is_recorded_and_the_suite_goes_on(tmp_path):
    suite = _suite_file(tmp_path)
    assert main(["fit", "--config", str(suite), "--model.recipe.lr", "-1"]) == 2  # every variant is validated first
    config = yaml.safe_load(suite.read_text())
    config["ablation"]["variants"][0]["overrides"]["model.recipe.lr"] = 1e30  # trains into a non-finite loss
    suite.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(suite)]) == 0
    status = {r["variant"]: r["status"] for r in _rows(tmp_path)}
    assert status["order2"].startswith("failed: FloatingPointError: non-finite training loss")
    assert status["order3"] == "ok" and status["lr_low"] == "ok"


def _spawn(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two trainers on 2 cores: no thread oversubscription
    return subprocess.Popen(
        [sys.executable, "-m", "hornet.cli", "fit", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def test_sigterm_interrupts_then_rerun_completes_each_run_once(tmp_path, one_thread, capsys):
    # SIGTERM at step 70 of the second run's 128 (inside its second epoch); once: the marker file remembers it
    kill = signal_at_step(70, tmp_path / "sigterm-sent")
    suite = _suite_file(tmp_path, train_size=1024, epochs=2, order3_callbacks=[kill])
    assert main(["fit", "--config", str(suite)]) == 143
    assert "interrupted" in capsys.readouterr().err
    second = tmp_path / "suite" / "order3" / "seed0"
    first_result = (tmp_path / "suite" / "order2" / "seed0" / "result.json").stat().st_mtime_ns
    rows = _rows(tmp_path)
    assert [(r["variant"], r["status"]) for r in rows] == [("order2", "ok"), ("order3", "interrupted")]
    stopped = torch.load(second / "checkpoints" / "on_exception.ckpt", weights_only=False)
    assert stopped["global_step"] == 70

    assert main(["fit", "--config", str(suite)]) == 0
    rows = _rows(tmp_path)
    assert [(r["variant"], r["status"]) for r in rows] == [("order2", "ok"), ("order3", "ok"), ("lr_low", "ok")]
    assert (tmp_path / "suite" / "order2" / "seed0" / "result.json").stat().st_mtime_ns == first_result
    for variant in ("order2", "order3", "lr_low"):
        state = torch.load(tmp_path / "suite" / variant / "seed0" / "checkpoints" / "last.ckpt", weights_only=False)
        assert state["epoch"] == 1 and state["global_step"] == 2 * 1024 // 16, variant  # trained once, not twice
    # the interrupted run, resumed mid-epoch, ends where the same config run without interruption ends
    resumed = torch.load(second / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    alone = ["fit", "--config", str(second / "config.yaml"), "--runs_dir", str(tmp_path), "--run_name", "alone"]
    assert main(alone) == 0
    uninterrupted = torch.load(tmp_path / "alone" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, msg=key)


def test_two_array_jobs_of_one_suite_both_land_in_results(tmp_path):
    suite = _suite_file(tmp_path, train_size=256)
    jobs = [_spawn(["--config", str(suite), "--ablation.only", str(index)]) for index in (0, 2)]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    assert [(r["variant"], r["status"]) for r in _rows(tmp_path)] == [("order2", "ok"), ("lr_low", "ok")]


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_suite_dry_runs(path, capsys):
    assert (
        main(["fit", "--config", str(path), "--ablation.dry_run", "true", "--ablation.estimate", "false",
              "--ablation.output_dir", "/nonexistent"]) == 0
    )  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())  # the table title may wrap
    spec = yaml.safe_load(path.read_text())["ablation"]
    assert len(spec["variants"]) >= 3 and spec["reference"] in [v["name"] for v in spec["variants"]]
    for variant in spec["variants"]:
        assert variant["name"] in out
    assert "MMACs" in out and "params_M" in out and "estimated" not in out  # no short runs timed when told not to
    assert not Path("/nonexistent").exists()


def test_suite_progress_line_shows_run_variant_seed_elapsed_and_eta():
    from hornet.ablation.progress import SuiteProgress

    progress = SuiteProgress("order_ablation", total=18, done=4, variant="order_3333", seed=1, stage="fit")
    progress.started -= 100.0  # 100 s in, 4.5 of 18 runs done -> 300 s to go
    progress.run_fraction = 0.5
    line = progress.describe()
    assert line.startswith("suite order_ablation: run 5/18 order_3333 seed 1 fit")
    assert "elapsed 01:40" in line and "ETA 05:00" in line


def test_suite_output_is_one_line_per_run_without_lightning_banners(tmp_path, capfd):
    suite = _suite_file(tmp_path)
    assert main(["fit", "--config", str(suite), "--trainer.enable_progress_bar", "true"]) == 0
    captured = capfd.readouterr()
    output = captured.out + captured.err
    for banner in ("GPU available", "TPU available", "Trainable params", "Tip:", "LOCAL_RANK", "Test metric"):
        assert banner not in output, banner  # Lightning's per-run banners, tips, summaries and test tables
    lines = [line for line in output.splitlines() if line.startswith("suite tiny: ")]
    assert [line.split()[2] for line in lines if line.endswith(" s")] == ["order2:0", "order3:0", "lr_low:0"]
    assert all(" ok, test_top1 " in line for line in lines if line.endswith(" s"))


def test_a_signal_whose_exception_was_replaced_by_an_error_marks_the_run_interrupted_not_failed(tmp_path, capsys):
    # in CI a SIGTERM landed inside torch.save and reached the suite as "RuntimeError: unexpected pos ..."
    kill = signal_at_step(3, tmp_path / "sigterm-sent", fate="replaced")
    suite = _suite_file(tmp_path, train_size=128, order3_callbacks=[kill])
    assert main(["fit", "--config", str(suite)]) == 143
    assert [(r["variant"], r["status"]) for r in _rows(tmp_path)] == [("order2", "ok"), ("order3", "interrupted")]
    capsys.readouterr()
    assert main(["fit", "--config", str(suite), "--ablation.dry_run", "true"]) == 0
    plan = " ".join(capsys.readouterr().out.split())
    assert "3 of 3 runs, 2 to do" in plan and "estimated wall time" in plan  # the time left, not the done run's
    assert main(["fit", "--config", str(suite)]) == 0
    assert [r["status"] for r in _rows(tmp_path)] == ["ok"] * 3


def test_two_workers_share_a_suite_and_a_sigterm_resumes_every_run_exactly_once(tmp_path, capfd):
    # the second variant's worker signals the suite's process at its step 40 of 64: all workers stop, each saving
    stop = signal_at_step(40, tmp_path / "sigterm-sent", parent=True)
    suite = _suite_file(tmp_path, train_size=512, epochs=2, seeds=(0, 1), order3_callbacks=[stop])
    assert main(["fit", "--config", str(suite), "--ablation.workers", "2"]) == 143
    out = capfd.readouterr()
    assert "2 workers (1 CPU thread each)" in out.err and "interrupted" in out.err
    stopped = {(r["variant"], r["seed"]): r["status"] for r in _rows(tmp_path)}
    assert stopped[("order3", "0")] == "interrupted" or stopped[("order3", "1")] == "interrupted"

    assert main(["fit", "--config", str(suite), "--ablation.workers", "2"]) == 0
    rows = _rows(tmp_path)
    assert sorted((r["variant"], r["seed"], r["status"]) for r in rows) == sorted(
        (v, s, "ok") for v in ("order2", "order3", "lr_low") for s in ("0", "1")
    )
    for variant in ("order2", "order3", "lr_low"):
        for seed in (0, 1):
            state = torch.load(tmp_path / "suite" / variant / f"seed{seed}" / "checkpoints" / "last.ckpt",
                               weights_only=False)  # fmt: skip
            assert state["global_step"] == 2 * 512 // 16, (variant, seed)  # every run trained exactly once
    lines = [
        line for line in capfd.readouterr().err.splitlines() if line.startswith("suite tiny: ") and " ok, " in line
    ]
    assert len(lines) == len({line.split()[2] for line in lines})  # one line per run finished in this invocation


def test_suite_wall_time_deals_the_runs_to_its_workers():
    from hornet.ablation.estimate import suite_wall_time

    assert suite_wall_time([3.0, 3.0, 3.0], workers=1) == 9.0
    assert suite_wall_time([3.0, 3.0, 3.0], workers=2) == 6.0  # the third run waits for a free worker
    assert suite_wall_time([10.0, 1.0, 1.0, 1.0], workers=2) == 10.0  # the short ones go on the other worker
    assert suite_wall_time([], workers=2) == 0.0


def test_a_dry_run_estimates_wall_time_from_a_short_real_run_and_from_finished_runs(tmp_path, capsys):
    """The estimate is a short real run's measured cost per batch and per run, scaled to the run's batches, dealt to
    the workers; each network is timed once over its seeds; a variant with finished runs takes their wall time."""
    from hornet.ablation.estimate import RunCost

    suite = _suite_file(tmp_path, train_size=256, seeds=(0, 1))
    dry = ["fit", "--config", str(suite), "--ablation.dry_run", "true", "--ablation.workers", "1"]
    assert main(dry) == 0
    printed = capsys.readouterr()
    assert printed.err.count("timing a short run of") == 3  # 3 variants x 2 seeds: 3 short runs
    plan = " ".join(printed.out.split())
    assert re.search(r"estimated wall time \d\d:\d\d \(1 worker\)", plan), plan
    assert not (tmp_path / "suite").exists()  # the short runs leave nothing in the suite's folder
    assert main(["fit", "--config", str(suite), "--ablation.only", "order2"]) == 0
    capsys.readouterr()
    assert main(dry) == 0
    printed = capsys.readouterr()
    assert "timing a short run of order2" not in printed.err  # its finished runs' wall time stands in
    rows = [line for line in printed.out.splitlines() if "order2" in line]
    assert len(rows) == 2 and all("done" in row and row.rstrip("│ ").endswith("-") for row in rows)  # nothing left
    cost = RunCost(fixed=2.0, train_batch=0.5, eval_batch=0.25)
    assert cost.run_seconds(epochs=2, train_batches=10, val_batches=4, test_batches=8) == 2.0 + 2 * (5 + 1) + 2

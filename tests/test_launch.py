"""One way to build a run: runs found again by name, one runs root, bad input that would train nothing, a checkpoint
read once, and suites whose runs take several processes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fit_args import tiny_fit
from PIL import Image

from hornet.cli import main
from hornet.data.fashion_mnist import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]
HAS_FASHION_MNIST = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
# the order ablation cut to seconds: one epoch on 512 images, one variant
TINY_SUITE = [
    "--config", str(ROOT / "experiments/order_ablation.yaml"), "--trainer.max_epochs", "1",
    "--data.init_args.limit_train", "512", "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def test_test_finds_a_run_by_name_and_builds_its_own_config(tmp_path, capsys):
    """The docs' sequence with a backbone other than the default config's: `hornet test --run_name X` alone."""
    where = ["--runs_dir", str(tmp_path), "--run_name", "nano"]
    assert main(["fit", *tiny_fit(backbone="hornet_nano_7x7", epochs=1), *where]) == 0
    assert main(["test", *where]) == 0
    err = capsys.readouterr().err
    assert f"hornet test: config from {tmp_path / 'nano' / 'config.yaml'}" in err and "test/top1=" in err
    # a resumed fit finds it too, and keys on the command line apply on top
    assert main(["fit", *where, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    assert torch.load(tmp_path / "nano" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1
    # an explicit --config wins: the default config's model is not the run's, and the checkpoint says so
    assert main(["test", "--config", str(ROOT / "lightning_cli.yaml"), *where]) == 2
    assert "was saved from another model" in capsys.readouterr().err


def test_a_run_name_with_no_run_says_so(tmp_path, capsys):
    assert main(["test", "--runs_dir", str(tmp_path), "--run_name", "never"]) == 2
    assert f"no checkpoint in {tmp_path / 'never' / 'checkpoints'}" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@needs_fashion_mnist
def test_a_suite_writes_only_under_runs_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*TINY_SUITE, "--ablation.seeds", "[0]", "--ablation.only", "order_2222", "--runs_dir", "elsewhere"]
    assert main(["fit", *args]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]
    assert (tmp_path / "elsewhere" / "order_ablation" / "order_2222" / "seed0" / "result.json").is_file()
    # the longer schedule's folder follows the runs root too
    full = [*args, "--config", str(ROOT / "experiments/scale/cpu_full.yaml"), "--ablation.dry_run", "true",
            "--ablation.estimate", "false"]  # fmt: skip
    capsys.readouterr()
    assert main(["fit", *full]) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]
    assert "-> elsewhere/order_ablation_cpu_full" in " ".join(capsys.readouterr().out.split())


def _image_folder(root: Path, per_class: int) -> Path:
    for name in ("cat", "dog", "owl"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((16, 16, 3), 25 * i, dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def test_a_fit_that_would_train_no_batch_is_one_line_and_leaves_no_run(tmp_path, capsys):
    data = _image_folder(tmp_path / "data", per_class=10)  # 30 images, a fixed validation split carved from them
    args = [
        "fit", "--data.class_path", "hornet.data.ImageFolderDataModule", "--data.init_args.root", str(data),
        "--data.init_args.img_size", "32", "--data.init_args.val_size", "6", "--model.backbone", "hornet_micro_7x7",
        "--runs_dir", str(tmp_path / "runs"), "--run_name", "small",
    ]  # fmt: skip
    assert main(args) == 2  # the default batch of 128
    lines = [line for line in capsys.readouterr().err.splitlines() if "hornet: error:" in line]
    assert len(lines) == 1 and "24 training images" in lines[0] and "batch_size 128" in lines[0], lines
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad", [["--model.recipe.lr", "-1"], ["--model.backbone", "hornet_micr_gf"]])
def test_a_rejected_command_leaves_no_run_directory(tmp_path, capsys, bad):
    assert main(["fit", *tiny_fit(), "--runs_dir", str(tmp_path / "runs"), "--run_name", "rejected", *bad]) == 2
    assert "hornet: error:" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_a_resumed_fit_reads_its_checkpoint_once(tmp_path, monkeypatch):
    where = ["--runs_dir", str(tmp_path), "--run_name", "resumed"]
    assert main(["fit", *tiny_fit(epochs=1), *where]) == 0
    last = (tmp_path / "resumed" / "checkpoints" / "last.ckpt").resolve()
    reads, load = [], torch.load

    def counting_load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f).resolve() == last:
            reads.append(f)
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    assert main(["fit", *tiny_fit(epochs=2), *where, "--ckpt_path", "last"]) == 0
    assert len(reads) == 1, reads
    assert load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1  # resumed


def test_a_failed_run_s_message_is_printed_as_text(tmp_path, capfd):
    """Error messages quote code and paths in brackets (gloo's "[/__w/pytorch/.../pair.cc:561]"): never markup."""
    message = "Connection closed by peer [/__w/pytorch/third_party/gloo/pair.cc:561]"
    fails = [{"class_path": "raise_at_start.RaiseAtStart", "init_args": {"message": message}}]
    suite = {
        "ablation": {
            "name": "brackets", "seeds": [0], "output_dir": str(tmp_path / "suite"),
            "variants": [{"name": "fails", "overrides": {"trainer.callbacks": fails}}],
        }
    }  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    args = ["fit", *tiny_fit(epochs=1), "--config", str(tmp_path / "suite.yaml")]
    assert main(args) == 0  # the suite goes on past a failed run (and records it)
    err = capfd.readouterr().err
    assert f"fails:0 failed: RuntimeError: {message}" in " ".join(err.split())


@pytest.mark.slow
@needs_fashion_mnist
def test_a_suite_under_ddp_on_a_small_machine_runs_one_worker_and_completes(tmp_path):
    """The suite of the issue that crashed: its runs take two processes each, so on two cores one worker runs them
    (two workers would start two process groups on the same two cores)."""
    args = [
        "fit", *TINY_SUITE, "--config", str(ROOT / "experiments/strategies/ddp.yaml"), "--trainer.accelerator",
        "cpu", "--trainer.devices", "2", "--ablation.seeds", "[0,1]", "--ablation.only", "order_2222",
        "--runs_dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hornet.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "order_ablation" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(row.endswith(",ok") for row in rows[1:]), rows
    assert "workers" not in done.stderr  # one worker: the runs one after another in the suite's own process


def test_a_best_checkpoint_whose_save_was_interrupted_is_forgotten_on_resume(tmp_path):
    """A signal during the best checkpoint's write leaves ModelCheckpoint's state naming a file that is not there;
    the resumed fit must save its next best rather than keep a best it does not have."""
    from hornet.checkpoints import forget_unsaved_best

    kept, lost = tmp_path / "best-epoch000.ckpt", tmp_path / "best-epoch001.ckpt"
    kept.write_bytes(b"")
    state = {"best_model_path": str(lost), "best_model_score": 1.0, "best_k_models": {str(lost): 1.0}}
    checkpoint = {"callbacks": {"ModelCheckpoint{best}": dict(state), "ModelCheckpoint{kept}": {
        **state, "best_model_path": str(kept), "best_k_models": {str(kept): 1.0}}, "TrainThroughput": {}}}  # fmt: skip
    forget_unsaved_best(checkpoint)
    assert checkpoint["callbacks"]["ModelCheckpoint{best}"]["best_model_score"] is None
    assert checkpoint["callbacks"]["ModelCheckpoint{best}"]["best_k_models"] == {}
    assert checkpoint["callbacks"]["ModelCheckpoint{kept}"]["best_model_path"] == str(kept)  # a saved best stays


def test_a_single_run_prints_hornet_s_lines_and_keeps_lightning_s_in_its_log(tmp_path, capfd):
    """Quiet by default: no banners, tips, known-harmless warnings or summary table on the console (they go to the
    run's lightning.log), scores as percentages; --verbose shows Lightning's own output again."""
    where = ["--runs_dir", str(tmp_path), "--run_name", "quiet"]
    assert main(["fit", *tiny_fit(epochs=1, summary=True), *where]) == 0
    err = capfd.readouterr().err
    for banner in ("Seed set to", "GPU available", "TPU available", "Tip:", "LeafSpec", "Name", "Trainable params"):
        assert banner not in err, banner
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("hornet fit: model hornet_micro_7x7, 0.") and " M MACs per 32 px image" in lines[0]
    assert re.search(r"val/top1=\d+\.\d\d%", err) and "val/loss=" in err  # scores as percentages, losses as they are
    log = (tmp_path / "quiet" / "lightning.log").read_text()
    assert "Seed set to 0" in log and "GPU available" in log
    assert main(["test", *where, "--verbose", "true"]) == 0
    shown = capfd.readouterr()  # Lightning's own results table, on rich's global console: stdout, or stderr once
    assert "Test metric" in shown.out + shown.err  # a progress bar in this process has reconfigured it to stderr

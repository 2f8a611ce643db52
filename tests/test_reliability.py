"""Reliability: every bad input gets one clear line (exit 2, no traceback); faults lose and corrupt nothing."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from fit_args import tiny_fit
from PIL import Image
from signal_at_step import signal_at_step

from hornet.ablation.store import rebuild_results
from hornet.cli import main
from hornet.data import ImageFolderDataModule
from hornet.errors import Interrupted, interrupt_on_signals, interrupted_by, raise_if_interrupted
from hornet.files import OutputError, write_json
from hornet.runs import RunDir, RunResult

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = tiny_fit(epochs=1, summary=False)
IMAGE_FOLDER = ["--data.class_path", "hornet.data.ImageFolderDataModule", "--data.init_args.img_size", "32"]


def _yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _backbone_kwargs(tmp_path: Path, **kwargs) -> list[str]:
    return ["--config", _yaml(tmp_path / "kwargs.yaml", {"model": {"backbone_kwargs": kwargs}})]


def _suite(tmp_path: Path) -> list[str]:
    suite = {
        "ablation": {
            "name": "tiny",
            "seeds": [0],
            "output_dir": str(tmp_path / "suite"),
            "variants": [{"name": "a", "overrides": {}}, {"name": "b", "overrides": {"model.recipe.lr": 1e-3}}],
        }
    }
    return ["--config", _yaml(tmp_path / "suite.yaml", suite)]


def _malformed_yaml(tmp_path: Path) -> list[str]:
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  lr: 0.001\n  backbone: [hornet_micro_gf\ntrainer:\n  max_epochs: 2\n")
    return ["--config", str(path)]


def _empty_image_tree(tmp_path: Path) -> list[str]:
    for name in ("cat", "dog"):
        (tmp_path / "images" / "train" / name).mkdir(parents=True)
        (tmp_path / "images" / "train" / name / "notes.txt").write_text("not an image")
    return [*IMAGE_FOLDER, "--data.init_args.root", str(tmp_path / "images")]


def _checkpoint(tmp_path: Path, content) -> list[str]:
    path = tmp_path / "given.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return ["--ckpt_path", str(path)]


def _released_for_another_architecture(tmp_path: Path) -> list[str]:
    path = tmp_path / "hornet_nano_7x7_released.pth"
    torch.save({"model": timm.create_model("hornet_nano_7x7").state_dict()}, path)  # the released files' layout
    return _backbone_kwargs(tmp_path, pretrained=True, pretrained_cfg_overlay={"file": str(path)})


def case(name: str, extra, *expected: str):
    """One bad input: its name (its row in docs/reliability.md), the arguments after `hornet fit <synthetic run>`,
    what the one line must say besides the table's words."""
    return pytest.param(name, extra, expected, id=name)


def _corrupt_image(tmp_path: Path) -> list[str]:
    _image_tree(tmp_path / "images")
    args = [*IMAGE_FOLDER, "--data.init_args.root", str(tmp_path / "images"), "--data.init_args.batch_size", "4"]
    return [*args, "--data.init_args.auto_augment", "null", "--trainer.enable_progress_bar", "false"]


def _documented_cases() -> dict[str, tuple[int, str]]:
    """docs/reliability.md's table of bad input: input -> (exit status, the words the one line starts with)."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    table = text[text.index("| input | exit | the line starts with |") :].split("\n\n")[0].splitlines()[2:]
    rows = {}
    for line in table:
        name, status, says = (cell.strip() for cell in line.strip("|").split("|"))
        rows[name] = (int(status), says.strip("`").strip().split(" ...")[0])
    return rows


BAD_INPUTS = [
    case("unknown model", lambda t: ["--model.backbone", "hornet_tiny_gff"], "unknown model 'hornet_tiny_gff'",
         "hornet_tiny_gf"),
    case("unknown key", lambda t: ["--trainer.max_epochz", "3"], "unrecognized arguments: --trainer.max_epochz"),
    case("order below 1", lambda t: _backbone_kwargs(t, orders=[0, 2, 3, 4]), "orders[0]=0",
         "order must be an integer >= 1"),
    case("width not divisible by 2^(order-1)", lambda t: _backbone_kwargs(t, orders=[2, 3, 4, 9]), "orders[3]=9",
         "multiple of 2^(order-1) = 256"),
    case("per-stage list of the wrong length", lambda t: _backbone_kwargs(t, orders=[2, 3, 4]),
         "orders must be a list of 4"),
    case("unknown mixer", lambda t: _backbone_kwargs(t, mixers=["dw7", "dw7", "dw7", "conv9"]),
         "mixer 'conv9' is unknown", "allowed"),
    case("even kernel size", lambda t: _backbone_kwargs(t, mixers=["dw6", "dw7", "dw7", "dw7"]), "mixer 'dw6'",
         "odd"),
    case("zero kernel size", lambda t: _backbone_kwargs(t, mixers=["dw0", "dw7", "dw7", "dw7"]), "mixer 'dw0'",
         "odd and >= 1"),
    case("keyword the model lacks", lambda t: _backbone_kwargs(t, order=[2, 3, 4, 5]), "model.backbone_kwargs",
         "'order'"),
    case("option the datamodule lacks", lambda t: ["--data.init_args.limit_trainz", "5"],
         "Option 'limit_trainz' is not accepted"),
    case("non-positive lr", lambda t: ["--model.recipe.lr", "0"], "model.recipe.lr must be > 0"),
    case("non-positive batch size", lambda t: ["--data.init_args.batch_size", "0"],
         "data.batch_size must be a positive integer"),
    case("odd Mixup batch", lambda t: ["--model.mixup", "0.8", "--data.init_args.batch_size", "15"],
         "data.batch_size must be even", "15"),
    case("unknown ablation.only run", lambda t: [*_suite(t), "--ablation.only", "c:0"],
         "ablation.only 'c:0' matches no run", "a, b"),
    case("malformed YAML", _malformed_yaml, "broken.yaml", "line 4"),
    case("corrupt image", _corrupt_image, "corrupt or truncated image", "data.skip_corrupt"),
    case("data root that does not exist", lambda t: [*IMAGE_FOLDER, "--data.init_args.root", str(t / "nowhere")],
         "nowhere", "does not exist"),
    case("data root without images", _empty_image_tree, str(Path("images") / "train"), "Found no valid file"),
    case("checkpoint that does not exist", lambda t: ["--ckpt_path", str(t / "gone.ckpt")], "gone.ckpt",
         "no such checkpoint file"),
    case("file that is not a checkpoint", lambda t: _checkpoint(t, b"plain text"), "given.ckpt",
         "is not a PyTorch checkpoint"),
    case("weights instead of a training checkpoint", lambda t: _checkpoint(t, {"stem.weight": torch.zeros(2)}),
         "holds model weights", "pretrained_cfg_overlay"),
    case("training checkpoint of another model",
         lambda t: _checkpoint(t, {"state_dict": {"backbone.other.weight": torch.zeros(2)}}),
         "saved from another model", "unexpected keys: backbone.other.weight", "missing keys"),
    case("released checkpoint of another architecture", _released_for_another_architecture, "does not fit",
         "shape mismatches"),
    case("no devices (Lightning's own check)", lambda t: ["--trainer.devices", "0"], "trainer.devices 0:",
         "Trainer(devices='0')", "not a valid input", "trainer.devices 1"),
    pytest.param("an accelerator this machine lacks", lambda t: ["--trainer.accelerator", "gpu"],
                 ("No supported gpu backend found", "takes cpu (or auto)"), id="an accelerator this machine lacks",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
]  # fmt: skip


def test_the_reliability_table_lists_every_case_and_no_other():
    assert set(_documented_cases()) == {case.id for case in BAD_INPUTS}


@pytest.mark.parametrize("name, extra, expected", BAD_INPUTS)
def test_bad_input_fails_with_one_clear_line_as_the_table_says(tmp_path, capsys, name, extra, expected):
    """Each row of docs/reliability.md's table, run: its exit status, one line starting with its words, no traceback,
    nothing trained, no run directory left."""
    documented_status, words = _documented_cases()[name]
    status = main(["fit", *SYNTHETIC, "--runs_dir", str(tmp_path / "runs"), *extra(tmp_path)])
    err = capsys.readouterr().err
    assert status == documented_status, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("hornet: error:")]
    assert len(errors) == 1, err
    pattern = ".*?".join(re.escape(part) for part in words.split("<path>"))  # <path>: a folder of this test's
    assert re.match(pattern, errors[0].removeprefix("hornet: error:").strip()), (words, errors[0])
    for text in expected:
        assert text in errors[0], errors[0]
    assert not list((tmp_path / "runs").rglob("*.ckpt")), "nothing trains before the input is checked"
    assert not (tmp_path / "runs").exists(), "a rejected command leaves no run directory"


def test_debug_shows_the_traceback(tmp_path):
    args = [
        sys.executable,
        "-m",
        "hornet.cli",
        "fit",
        *SYNTHETIC,
        "--model.recipe.lr",
        "0",
        "--runs_dir",
        str(tmp_path),
    ]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HORNET_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "model.recipe.lr must be > 0" in result.stderr


# --- data faults ------------------------------------------------------------------------------------------------------
def _image_tree(root: Path, per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "train" / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    whole = (root / "train" / "dog" / "0.png").read_bytes()
    (root / "train" / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_corrupt_skips_and_counts_them(tmp_path, num_workers):
    _image_tree(tmp_path / "images")  # 14 training files, 2 of them unreadable
    data = ImageFolderDataModule(
        root=str(tmp_path / "images"), img_size=32, batch_size=7, num_workers=num_workers, skip_corrupt=True
    )
    data.setup("fit")
    # warnings from loader worker processes do not reach pytest: check them in the main process only
    warned = pytest.warns(UserWarning, match="data.skip_corrupt: skipped") if num_workers == 0 else nullcontext()
    with warned:
        images = sum(len(x) for x, _ in data.train_dataloader())
        images += sum(len(x) for x, _ in data.train_dataloader())  # a second epoch: the same two files again
    assert images == 2 * 14  # every batch full: a corrupt file is replaced by the next readable one
    assert data.skipped_images == 2  # distinct files, whichever worker process met them, however often
    marked = [(path, flag) for folder in data.folders for (path, _), flag in zip(folder.samples, folder.corrupt)]
    assert {Path(path).name for path, flag in marked if flag} == {"bad.jpg", "truncated.png"}


# --- training faults --------------------------------------------------------------------------------------------------
def test_a_non_finite_loss_stops_the_run_with_step_variant_and_hint(tmp_path, capsys):
    args = [
        "fit",
        *SYNTHETIC,
        "--model.recipe.lr",
        "1e6",
        "--model.recipe.warmup_epochs",
        "0",
        "--trainer.max_epochs",
        "3",
    ]
    status = main([*args, "--runs_dir", str(tmp_path), "--run_name", "diverged"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err, err
    line = next(line for line in err.splitlines() if line.startswith("hornet: error:"))
    assert "non-finite training loss" in line and "at step" in line and "hornet_micro_7x7" in line, line
    assert "diverged" in line and "model.recipe.lr" in line and "gradient_clip_val" in line and "precision" in line
    assert not (tmp_path / "diverged" / "checkpoints" / "on_exception.ckpt").exists()  # its weights went wrong


# --- outputs are never corrupted --------------------------------------------------------------------------------------
def test_a_failed_write_names_the_path_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"status": "ok", "test_top1": 0.9})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError, match="No space left on device") as failure:
        write_json(path, {"status": "ok", "test_top1": 0.1})
    assert str(path) in str(failure.value) and "previous file is unchanged" in str(failure.value)
    assert json.loads(path.read_text())["test_top1"] == 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # the temporary file is gone


def test_results_csv_survives_a_failed_rebuild(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "a" / "seed0")
    run.path.mkdir(parents=True)
    run.write_result(RunResult("s", "a", 0, scores={"test_top1": 0.5}, status="ok"))
    before = rebuild_results(tmp_path, [("a", 0)]).read_text()
    run.write_result(RunResult("s", "a", 0, scores={"test_top1": 0.7}, status="ok"))
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))
    with pytest.raises(OutputError, match=r"results\.csv"):
        rebuild_results(tmp_path, [("a", 0)])
    assert (tmp_path / "results.csv").read_text() == before


def test_an_unwritable_output_directory_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs directory should be")  # unwritable as a directory, even for root
    assert main(["fit", *SYNTHETIC, "--runs_dir", str(blocker)]) == 2
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("hornet: error:"))
    assert "--runs_dir" in line and str(blocker) in line


def test_a_full_disk_while_checkpointing_fails_in_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    assert main(["fit", *SYNTHETIC, "--runs_dir", str(tmp_path), "--run_name", "full"]) == 0
    last = tmp_path / "full" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)["global_step"]
    real_save = torch.save

    def disk_full(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and "state_dict" in obj:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    args = ["--trainer.max_epochs", "2", "--ckpt_path", "last"]
    assert main(["fit", *SYNTHETIC, "--runs_dir", str(tmp_path), "--run_name", "full", *args]) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("hornet: error:"))
    assert "No space left on device" in line and "checkpoints" in line, line
    assert torch.load(last, weights_only=False)["global_step"] == saved  # the previous checkpoint, whole
    assert not list(last.parent.glob(".*.tmp"))


# --- kill and resume --------------------------------------------------------------------------------------------------
RESUME = tiny_fit(train_size=1024, summary=False)  # 64 steps an epoch, 2 epochs


@pytest.mark.slow
def test_a_fit_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, one_thread):
    assert main(["fit", *RESUME, "--runs_dir", str(tmp_path), "--run_name", "whole"]) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)

    args = [*RESUME, "--runs_dir", str(tmp_path), "--run_name", "killed"]
    kill = yaml.safe_dump({"trainer": {"callbacks": [signal_at_step(90, tmp_path / "sent")]}})  # in epoch 2 of 2
    assert main(["fit", *args, "--config", kill]) == 143
    stopped = torch.load(tmp_path / "killed" / "checkpoints" / "on_exception.ckpt", weights_only=False)
    assert stopped["global_step"] == 90  # mid-epoch
    assert main(["fit", *args, "--ckpt_path", "last"]) == 0
    resumed = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == whole["global_step"] == 128  # no completed step lost, none done twice
    for key, value in whole["state_dict"].items():  # the resumed epoch continued the same data order
        torch.testing.assert_close(resumed["state_dict"][key], value, msg=key)


def test_the_signal_behind_an_error_that_replaced_or_lost_its_exception_is_found():
    try:
        try:
            raise Interrupted(signal.SIGTERM)
        finally:
            raise RuntimeError("unexpected pos 3320640 vs 3320528")  # what a torch.save cut short raised in CI
    except RuntimeError as err:
        assert interrupted_by(err).signum == signal.SIGTERM
    assert interrupted_by(RuntimeError("no signal")) is None
    with interrupt_on_signals():
        raise_if_interrupted()  # nothing arrived yet
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except Interrupted:
            pass  # lost where it landed
        assert interrupted_by(RuntimeError("after the signal")).signum == signal.SIGINT
        with pytest.raises(Interrupted, match="SIGINT"):
            raise_if_interrupted()
    raise_if_interrupted()  # outside the block: no signal pending
    with interrupt_on_signals():
        raise_if_interrupted()  # a new block starts clean


def test_a_signal_whose_exception_was_lost_still_stops_the_fit_within_a_batch(tmp_path):
    args = [*tiny_fit(train_size=512, summary=False), "--runs_dir", str(tmp_path), "--run_name", "lost"]
    lost = yaml.safe_dump({"trainer": {"callbacks": [signal_at_step(5, tmp_path / "sent", fate="lost")]}})
    assert main(["fit", *args, "--config", lost]) == 143
    saved = torch.load(tmp_path / "lost" / "checkpoints" / "on_exception.ckpt", weights_only=False)
    assert saved["global_step"] in (5, 6)  # at the end of the batch it landed in, or of the next one

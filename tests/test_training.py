"""`hornet fit|validate|test|predict`: configs, outputs, resuming, the classification module and the DataModules."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fit_args import tiny_fit
from signal_at_step import signal_at_step

from hornet.cli import main
from hornet.data import FashionMNISTDataModule, SyntheticDataModule
from hornet.data.fashion_mnist import DEBIAN_FASHION_MNIST, read_idx
from hornet.data.in_memory import random_crop_flip
from hornet.lit import ClassificationModule
from hornet.lit.recipe import Recipe
from hornet.runs import class_args

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = tiny_fit()
HAS_FASHION_MNIST = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()


def _fit(tmp_path, *extra, name="run"):
    return main(["fit", *SYNTHETIC, "--runs_dir", str(tmp_path), "--run_name", name, *extra])


def test_fit_writes_the_run_directory(tmp_path):
    assert _fit(tmp_path) == 0
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "meta.json").is_file() and (run / "metrics.csv").is_file()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(n.startswith("best-epoch") and "/" not in n for n in checkpoints)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["versions"]["torch"] and "commit" in meta and "dirty" in meta
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("train/loss_epoch", "val/top1", "val/top5", "lr", "train/img_s", "train/grad_norm"):
        assert column in header, column
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        class_args(config["model"])["backbone"] == "hornet_micro_7x7"
        and config["data"]["init_args"]["train_size"] == 64
    )
    assert config["base"] is None and config["ckpt_path"] is None  # the file stands alone
    assert list(run.glob("events.out.tfevents.*"))  # TensorBoard beside metrics.csv


def test_a_configured_logger_is_added_beside_the_run_logs(tmp_path):
    extra = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "extra")}}
    assert (
        _fit(tmp_path, "--trainer.max_epochs", "1", "--config", yaml.safe_dump({"trainer": {"logger": [extra]}})) == 0
    )
    ours = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    (theirs,) = (tmp_path / "extra").rglob("metrics.csv")
    theirs = list(csv.DictReader(theirs.open()))
    assert ours and [r["val/top1"] for r in ours if r.get("val/top1")] == [
        r["val/top1"] for r in theirs if r.get("val/top1")
    ]
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))  # and TensorBoard, as without it


def test_resolved_config_reproduces_the_run(tmp_path):
    assert _fit(tmp_path, "--trainer.max_epochs", "1") == 0
    first = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    config = tmp_path / "run" / "config.yaml"
    assert main(["fit", "--config", str(config), "--run_name", "again", "--runs_dir", str(tmp_path)]) == 0
    second = torch.load(tmp_path / "again" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key, value in first.items():
        torch.testing.assert_close(second[key], value)


def _lightning_fit(root, max_epochs, ckpt_path=None):
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.callbacks import ModelCheckpoint

    seed_everything(0)
    module = ClassificationModule(
        backbone="hornet_micro_7x7", num_classes=10, in_chans=3, img_size=32, recipe=Recipe(lr=3e-3)
    )
    data = SyntheticDataModule(batch_size=16, train_size=64, val_size=32, test_size=32)
    every_epoch = ModelCheckpoint(dirpath=root, filename="e{epoch}", save_top_k=-1, monitor=None)
    trainer = Trainer(
        max_epochs=max_epochs, callbacks=[every_epoch], logger=False, enable_progress_bar=False, default_root_dir=root
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


def test_resume_from_epoch_boundary_matches_uninterrupted(tmp_path):
    straight = _lightning_fit(tmp_path / "straight", max_epochs=3)
    boundary = tmp_path / "straight" / "eepoch=0.ckpt"  # the state after epoch 1 of the same 3-epoch run
    resumed = _lightning_fit(tmp_path / "resumed", max_epochs=3, ckpt_path=str(boundary))
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=key)


def test_ckpt_path_last_resumes_in_a_new_invocation(tmp_path):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", name="resumed") == 0
    assert _fit(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last", name="resumed") == 0
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 8 and checkpoint["epoch"] == 1  # continued, not restarted
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    epochs = {row.split(",")[0] for row in rows[1:]}
    assert epochs == {"0", "1"}  # the first invocation's log rows are kept


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tmp_path, capsys):
    assert _fit(tmp_path, "--ckpt_path", "last", name="never") == 2
    assert "--ckpt_path last: no " in capsys.readouterr().err


def test_test_uses_the_best_checkpoint_and_predict_writes_csv(tmp_path, capsys):
    assert _fit(tmp_path, "--model.ema_decay", "0.9") == 0
    common = [*SYNTHETIC, "--model.ema_decay", "0.9", "--runs_dir", str(tmp_path), "--run_name", "run"]
    fit_rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert main(["test", *common]) == 0
    err = capsys.readouterr().err
    assert "test/top1=" in err and "test/top1_ema=" in err
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == len(fit_rows)  # the fit's rows are kept, the test's row appended
    assert (
        rows[0]["train/loss_step"]
        and 0 <= float(rows[-1]["test/top1"]) <= 1
        and 0 <= float(rows[-1]["test/top1_ema"]) <= 1
    )
    assert err.count("test/top1=") == 1 and f"test/top1={100 * float(rows[-1]['test/top1']):.2f}%" in err
    assert main(["predict", *common]) == 0
    rows = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,class1,prob1,class2,prob2,class3,prob3,class4,prob4,class5,prob5" and len(rows) == 33


def test_a_fit_checkpoint_loads_into_timm_raw_or_ema(tmp_path):
    import timm

    assert _fit(tmp_path, "--model.ema_decay", "0.9", "--trainer.max_epochs", "1") == 0
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(path, weights_only=False)["state_dict"]
    for weights, prefix in (("raw", "backbone."), ("ema", "ema.module.")):
        overlay = dict(file=str(path), weights=weights)
        model = timm.create_model("hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, state[prefix + key], rtol=0, atol=0)
    assert not torch.equal(state["backbone.head.weight"], state["ema.module.head.weight"])


def test_test_without_any_checkpoint_is_an_error(tmp_path, capsys):
    assert main(["test", *SYNTHETIC, "--runs_dir", str(tmp_path), "--run_name", "none"]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


@pytest.mark.parametrize(  # one case as a real process; tests/test_reliability.py drives every case in-process
    "args,message", [(["--trainer.max_epochz", "3"], "unrecognized arguments: --trainer.max_epochz")]
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "hornet.cli", "fit", *SYNTHETIC, *args], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hornet: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    module = ClassificationModule(
        backbone="hornet_micro_gf", num_classes=4, in_chans=1, img_size=32, recipe=Recipe(lr=3e-3)
    )
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8) % 4
    optimizer = torch.optim.AdamW(module.backbone.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def _fake_trainer(*, steps: int, epochs: int | None, batches: int):
    """What configure_optimizers reads of a Trainer: total optimizer steps, epochs, batches per epoch."""
    return type(
        "T", (),
        {"datamodule": type("D", (), {"global_batch_size": 512})(), "estimated_stepping_batches": steps,
         "max_epochs": epochs, "num_training_batches": batches, "accumulate_grad_batches": 1},
    )()  # fmt: skip


def test_weight_decay_groups_and_linear_lr_scaling():
    module = ClassificationModule(
        backbone="hornet_micro_gf", num_classes=10, recipe=Recipe(lr=4e-3, lr_scaling="linear")
    )
    module._trainer = _fake_trainer(steps=100, epochs=2, batches=50)
    assert module.effective_lr == pytest.approx(4e-3 * 512 / 4096)
    optimizer = module.configure_optimizers()["optimizer"]
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    gf = module.backbone.stages[2][0].gnconv.dwconv.complex_weight
    assert id(gf) in decayed and id(module.backbone.stages[2][0].gamma1) not in decayed


def test_warm_up_counts_epochs_of_batches_also_when_max_steps_ends_the_fit():
    module = ClassificationModule(
        backbone="hornet_micro_7x7", num_classes=10, recipe=Recipe(lr=1e-3, warmup_epochs=1.5, min_lr=0)
    )
    module._trainer = _fake_trainer(steps=1000, epochs=None, batches=100)  # trainer.max_steps 1000, no max_epochs
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert schedule(149) < 1 and schedule(150) == pytest.approx(1.0)  # 150 warm-up steps (1.5 epochs of 100)
    assert schedule(999) < 0.01


def test_mixup_needs_an_even_batch():
    module = ClassificationModule(backbone="hornet_micro_7x7", num_classes=4, mixup=0.8, cutmix=1.0)
    with pytest.raises(ValueError, match="even batch size"):
        module.training_step((torch.randn(3, 3, 32, 32), torch.zeros(3, dtype=torch.long)), 0)


def test_synthetic_datamodule_is_deterministic():
    a, b = SyntheticDataModule(seed=3), SyntheticDataModule(seed=3)
    a.setup(), b.setup()
    torch.testing.assert_close(a.train_set.tensors[0], b.train_set.tensors[0])
    assert a.num_classes == 10 and a.in_chans == 3


def test_random_crop_flip_translates_and_flips_with_the_fill_at_the_border():
    x = torch.arange(64 * 1 * 6 * 6, dtype=torch.float).reshape(64, 1, 6, 6) + 1  # no zeros: 0 marks the fill
    out = random_crop_flip(x, padding=2, fill=0.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    shifts, flips = set(), 0
    for image, source in zip(out, x):
        matches = []
        for flipped in (False, True):
            view = image.flip(-1) if flipped else image
            for dy in range(-2, 3):
                for dx in range(-2, 3):  # out[y, x] = source[y + dy, x + dx] where that is inside, else the fill
                    shifted = torch.zeros_like(source)
                    rows, cols = slice(max(-dy, 0), 6 - max(dy, 0)), slice(max(-dx, 0), 6 - max(dx, 0))
                    shifted[:, rows, cols] = source[:, max(dy, 0) : 6 + min(dy, 0), max(dx, 0) : 6 + min(dx, 0)]
                    if torch.equal(view, shifted):
                        matches.append((dy, dx, flipped))
        assert len(matches) == 1, matches  # every output is one translation of its input, maybe flipped
        shifts.add(matches[0][:2])
        flips += matches[0][2]
    assert len(shifts) > 10 and 16 < flips < 48  # the draws vary: many of the 25 shifts, about half flipped
    alone = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(alone, x))  # padding 0: flips only


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package():
    images = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype.name == "uint8"
    data = FashionMNISTDataModule(val_size=1000, batch_size=64, limit_train=500)
    data.setup()
    assert len(data.train_set) == 500 and len(data.val_set) == 1000 and len(data.test_set) == 10000
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (64, 1, 32, 32) and y.max() < 10
    center = data.test_set.tensors[0][:, :, 2:30, 2:30]  # the 28 px images inside the 2 px padding
    assert abs(float(center.mean())) < 0.05  # normalized with the training mean/std


def test_explicit_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no Fashion-MNIST IDX files"):
        FashionMNISTDataModule(root=str(tmp_path)).prepare_data()


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="Debian's dataset-fashion-mnist is not installed")
def test_short_fit_on_a_fashion_mnist_slice(tmp_path):
    args = ["fit", "--runs_dir", str(tmp_path), "--run_name", "fmnist", "--trainer.max_epochs", "1"]
    args += [
        "--data.init_args.limit_train",
        "1024",
        "--data.init_args.val_size",
        "512",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(args) == 0
    metrics = (tmp_path / "fmnist" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    top1 = [
        float(r.split(",")[header.index("val/top1")]) for r in metrics[1:] if r.split(",")[header.index("val/top1")]
    ]
    assert top1 and top1[-1] > 0.3  # 1024 images, one epoch: far above chance (0.1)


def test_sigterm_during_fit_saves_a_resumable_checkpoint_and_exits_143(tmp_path):
    args = [*tiny_fit(train_size=2048), "--runs_dir", str(tmp_path), "--run_name", "killed"]
    kill = yaml.safe_dump({"trainer": {"callbacks": [signal_at_step(20, tmp_path / "sent")]}})  # mid-epoch 1 of 2
    process = subprocess.run(
        [sys.executable, "-m", "hornet.cli", "fit", *args, "--config", kill], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert process.returncode == 143 == 128 + signal.SIGTERM, process.stderr
    assert "resume with --run_name killed --ckpt_path last" in process.stderr and "Traceback" not in process.stderr
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "on_exception.ckpt", weights_only=False)
    assert saved["global_step"] == 20
    assert main(["fit", *args, "--ckpt_path", "last"]) == 0  # resumes from the newest: the on-exception checkpoint
    final = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["epoch"] == 1 and final["global_step"] == 2 * 2048 // 16

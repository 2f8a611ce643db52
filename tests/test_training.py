"""`hornet fit|validate|test|predict`: configs, outputs, resuming, the classification module and the DataModules."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from hornet.cli import main
from hornet.data import FashionMNISTDataModule, SyntheticDataModule
from hornet.data.fashion_mnist import DEBIAN_FASHION_MNIST, read_idx
from hornet.data.in_memory import random_crop_flip
from hornet.lit import ClassificationModule

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = [
    "--data.class_path", "hornet.data.SyntheticDataModule",
    "--data.init_args.batch_size", "16", "--data.init_args.img_size", "32",
    "--data.init_args.train_size", "64", "--data.init_args.val_size", "32", "--data.init_args.test_size", "32",
    "--model.backbone", "hornet_micro_7x7", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip
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
    assert config["model"]["backbone"] == "hornet_micro_7x7" and config["data"]["init_args"]["train_size"] == 64


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
    module = ClassificationModule(backbone="hornet_micro_7x7", num_classes=10, in_chans=3, img_size=32, lr=3e-3)
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
    assert rows[0]["train/loss_step"] and float(rows[-1]["test/top1"]) >= 0 and "test/top1_ema" in rows[-1]
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


@pytest.mark.parametrize("path", [ROOT / "lightning_cli.yaml", *sorted((ROOT / "experiments").rglob("*.yaml"))])
def test_every_config_parses(path, capsys):
    args = [] if path.name == "lightning_cli.yaml" else ["--config", str(path)]
    with pytest.raises(SystemExit) as done:
        main(["fit", *args, "--print_config"])
    assert done.value.code in (0, None)
    assert "model:" in capsys.readouterr().out


def test_configs_compose_later_wins(tmp_path, capsys):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model:\n  lr: 0.1\n  weight_decay: 0.2\n")
    second.write_text("model:\n  lr: 0.3\n  min_lr: ${.lr}\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(first), "--config", str(second), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["lr"] == 0.3 and config["model"]["weight_decay"] == 0.2 and config["model"]["min_lr"] == 0.3


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    module = ClassificationModule(backbone="hornet_micro_gf", num_classes=4, in_chans=1, img_size=32, lr=3e-3)
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


def test_weight_decay_groups_and_linear_lr_scaling():
    module = ClassificationModule(backbone="hornet_micro_gf", num_classes=10, lr=4e-3, lr_scaling="linear")
    trainer = type(
        "T",
        (),
        {"datamodule": type("D", (), {"global_batch_size": 512})(), "estimated_stepping_batches": 100, "max_epochs": 2},
    )()
    module._trainer = trainer
    assert module.effective_lr == pytest.approx(4e-3 * 512 / 4096)
    optimizer = module.configure_optimizers()["optimizer"]
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    gf = module.backbone.stages[2][0].gnconv.dwconv.complex_weight
    assert id(gf) in decayed and id(module.backbone.stages[2][0].gamma1) not in decayed


def test_mixup_needs_an_even_batch():
    module = ClassificationModule(backbone="hornet_micro_7x7", num_classes=4, mixup=0.8, cutmix=1.0)
    with pytest.raises(ValueError, match="even batch size"):
        module.training_step((torch.randn(3, 3, 32, 32), torch.zeros(3, dtype=torch.long)), 0)


def test_synthetic_datamodule_is_deterministic():
    a, b = SyntheticDataModule(seed=3), SyntheticDataModule(seed=3)
    a.setup(), b.setup()
    torch.testing.assert_close(a.train_set.tensors[0], b.train_set.tensors[0])
    assert a.num_classes == 10 and a.in_chans == 3


def test_random_crop_flip_shapes_and_content():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float).reshape(2, 1, 6, 6)
    out = random_crop_flip(x, padding=0)
    assert out.shape == x.shape
    for i in range(2):  # with no padding only the flip can happen
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


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


PAPER_1K = {  # REFERENCE.md: drop path, clip, RandAugment magnitude
    "hornet_tiny_7x7": (0.2, 100, 9),
    "hornet_tiny_gf": (0.2, 1, 9),
    "hornet_small_7x7": (0.4, 5, 9),
    "hornet_small_gf": (0.4, 1, 12),
    "hornet_base_7x7": (0.5, 5, 9),
    "hornet_base_gf": (0.5, 1, 15),
}


@pytest.mark.parametrize("name", sorted(PAPER_1K))
def test_paper_imagenet_1k_recipes(name):
    config = yaml.safe_load((ROOT / "experiments" / "paper" / f"{name}.yaml").read_text())
    trainer, model, data = config["trainer"], config["model"], config["data"]["init_args"]
    drop_path, clip, magnitude = PAPER_1K[name]
    global_batch = trainer["devices"] * trainer["num_nodes"] * trainer["accumulate_grad_batches"] * data["batch_size"]
    assert global_batch == 4096 and model["lr"] == 4e-3 and model["lr_scaling"] == "linear"
    assert (model["drop_path_rate"], trainer["gradient_clip_val"]) == (drop_path, clip)
    assert data["auto_augment"] == f"rand-m{magnitude}-mstd0.5-inc1" and data["re_prob"] == 0.25
    assert (model["weight_decay"], model["warmup_epochs"], model["min_lr"], trainer["max_epochs"]) == (
        0.05,
        20,
        1e-6,
        300,
    )
    assert (model["mixup"], model["cutmix"], model["label_smoothing"], model["ema_decay"]) == (0.8, 1.0, 0.1, 0.9999)
    assert model["backbone"] == name


def test_paper_large_22k_and_384_finetune_recipes():
    pre = yaml.safe_load((ROOT / "experiments" / "paper" / "hornet_large_gf_in22k.yaml").read_text())
    t, m, d = pre["trainer"], pre["model"], pre["data"]["init_args"]
    assert t["devices"] * t["num_nodes"] * t["accumulate_grad_batches"] * d["batch_size"] == 4096
    assert (t["max_epochs"], m["weight_decay"], m["warmup_epochs"], m["drop_path_rate"], t["gradient_clip_val"]) == (
        90,
        0.1,
        5,
        0.2,
        1,
    )
    ft = yaml.safe_load((ROOT / "experiments" / "paper" / "hornet_large_gf_img384_ft1k.yaml").read_text())
    t, m, d = ft["trainer"], ft["model"], ft["data"]["init_args"]
    assert t["devices"] * t["num_nodes"] * t["accumulate_grad_batches"] * d["batch_size"] == 512
    assert (m["lr"], m["lr_scaling"], m["weight_decay"], m["warmup_epochs"], m["layer_decay"]) == (
        5e-5,
        "none",
        1e-8,
        0,
        0.7,
    )
    assert (t["max_epochs"], m["drop_path_rate"], t["gradient_clip_val"], m["ema_decay"]) == (30, 0.4, 1, 0.9999)
    assert m.get("mixup", 0) == 0 and m.get("cutmix", 0) == 0 and d["img_size"] == 384
    assert m["backbone"] == "hornet_large_gf_img384" and m["backbone_kwargs"]["pretrained"] is True


def test_sigterm_during_fit_saves_a_resumable_checkpoint_and_exits_143(tmp_path):
    args = [*SYNTHETIC, "--data.init_args.train_size", "2048", "--trainer.max_epochs", "2"]
    args += ["--runs_dir", str(tmp_path), "--run_name", "killed"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hornet.cli", "fit", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > 20:  # some steps logged: mid-epoch
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "--ckpt_path last" in err and "Traceback" not in err
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "on_exception.ckpt", weights_only=False)
    assert 0 < saved["global_step"] < 2 * 2048 // 16
    assert main(["fit", *args, "--ckpt_path", "last"]) == 0  # resumes from the newest: the on-exception checkpoint
    final = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["epoch"] == 1 and final["global_step"] >= saved["global_step"]

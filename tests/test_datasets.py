"""CIFAR and ImageFolder DataModules on generated trees; `hornet predict` on a folder of images."""

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from hornet.cli import main
from hornet.data import CIFARDataModule, ImageFolderDataModule
from hornet.lit import ClassificationModule


def _write_cifar10(root, per_batch=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch).tolist()
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with (folder / name).open("wb") as handle:
            pickle.dump({b"data": data, b"labels": labels}, handle)
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, handle)
    return folder


def test_cifar10_reads_the_python_release(tmp_path):
    folder = _write_cifar10(tmp_path)
    data = CIFARDataModule(root=str(tmp_path), val_size=10, batch_size=8, augment="none")
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (90, 10, 20)
    assert data.num_classes == 10 and data.classes[3] == "class3"
    x, y = data.test_set[0]
    raw = pickle.load((folder / "test_batch").open("rb"), encoding="bytes")
    expected = torch.tensor(raw[b"data"][0], dtype=torch.float32).view(3, 32, 32) / 255
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    torch.testing.assert_close(x, (expected - mean) / std)
    assert y == raw[b"labels"][0]


def test_cifar_missing_files_name_the_root_and_the_download_switch(tmp_path):
    data = CIFARDataModule(name="cifar100", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"holds no cifar100 .* data.download: true"):
        data.prepare_data()


def _write_image_tree(root, splits=("train", "val"), classes=("cat", "dog", "owl"), per_class=6):
    rng = np.random.default_rng(0)
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 64, (40, 48, 3), dtype=np.uint8) + np.uint8(80 * index)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_uses_timm_transforms_from_the_backbone_cfg(tmp_path):
    _write_image_tree(tmp_path)
    data = ImageFolderDataModule(root=str(tmp_path), img_size=32, batch_size=4, num_workers=0)
    assert data.num_classes == 3 and data.classes == ("cat", "dog", "owl")
    config = data.data_config()  # no trainer: timm defaults
    assert config["input_size"] == (3, 32, 32) and config["crop_pct"] == 0.875
    data.setup("fit")
    x, y = data.train_set[0]
    assert x.shape == (3, 32, 32) and y == 0
    assert "RandAugment" in repr(data.train_set.transform) and "RandomErasing" in repr(data.train_set.transform)
    assert len(data.test_set) == 18  # no test/: the test split is val/


def test_image_folder_without_val_carves_a_fixed_split(tmp_path):
    _write_image_tree(tmp_path, splits=("train",))
    data = ImageFolderDataModule(root=str(tmp_path), img_size=32, val_size=5, split_seed=3, num_workers=0)
    data.setup("fit")
    assert len(data.train_set) == 13 and len(data.val_set) == 5
    assert not set(data.train_set.indices) & set(data.val_set.indices)
    again = ImageFolderDataModule(root=str(tmp_path), img_size=32, val_size=5, split_seed=3, num_workers=0)
    again.setup("fit")
    assert again.val_set.indices == data.val_set.indices


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no train/ folder"):
        ImageFolderDataModule(root=str(tmp_path))
    (tmp_path / "train" / "only").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="at least two class folders"):
        ImageFolderDataModule(root=str(tmp_path))


def test_image_folder_crop_pct_follows_the_backbone(tmp_path):
    _write_image_tree(tmp_path)
    data = ImageFolderDataModule(root=str(tmp_path), img_size=32, num_workers=0)
    module = ClassificationModule(backbone="hornet_micro_gf", num_classes=3, in_chans=3, img_size=32)

    class Trainer:  # what data_config reads from the trainer
        lightning_module = module

    data.trainer = Trainer()
    assert data.data_config()["crop_pct"] == 1.0  # the micro variants' pretrained cfg, not timm's 0.875
    assert ImageFolderDataModule(root=str(tmp_path), crop_pct=0.9).data_config()["crop_pct"] == 0.9


def test_fit_on_an_image_folder_then_predict_a_folder_of_images(tmp_path):
    _write_image_tree(tmp_path / "data")
    loose = tmp_path / "loose" / "nested"
    loose.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 60 * i, dtype=np.uint8)).save(loose / f"img{i}.jpg")
    common = [
        "--data.class_path", "hornet.data.ImageFolderDataModule", "--data.init_args.root", str(tmp_path / "data"),
        "--data.init_args.img_size", "32", "--data.init_args.batch_size", "6", "--data.init_args.num_workers", "0",
        "--model.backbone", "hornet_micro_7x7", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--runs_dir", str(tmp_path / "runs"), "--run_name", "folder",
    ]  # fmt: skip
    by_name = ["--runs_dir", str(tmp_path / "runs"), "--run_name", "folder"]  # the run's own config, found by name
    assert main(["fit", *common]) == 0 and main(["test", *by_name]) == 0
    assert main(["predict", *by_name, "--data.init_args.predict_dir", str(tmp_path / "loose")]) == 0
    with (tmp_path / "runs" / "folder" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [str(loose / f"img{i}.jpg") for i in range(3)]
    for row in rows:
        probs = [float(row[f"prob{i}"]) for i in (1, 2, 3)]
        assert row["class1"] in ("cat", "dog", "owl") and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-3)  # 3 classes: top-3 is all of them

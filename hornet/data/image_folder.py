"""ImageFolder / ImageNet layout with timm's transform pipeline (RandAugment, random erasing, crop_pct)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from timm.data import create_transform, resolve_data_config
from torchvision.datasets import ImageFolder

from hornet.data.base import ClassificationDataModule, split_train_val

__all__ = ["ImageFolderDataModule"]


class ImageFolderDataModule(ClassificationDataModule):
    """Images in ``root/train/<class>/*`` and ``root/val/<class>/*`` (the ImageNet layout), optional ``root/test``.

    Without ``val/`` a fixed validation split of ``val_size`` images is carved from ``train/`` by ``split_seed``;
    without ``test/`` the test split is ``val/``. Transforms are timm's: training uses RandomResizedCrop,
    ``auto_augment`` (RandAugment policy string), ``re_prob`` random erasing, horizontal flip; evaluation resizes
    to ``img_size / crop_pct`` and centre-crops. ``crop_pct``, ``interpolation``, ``mean`` and ``std`` default to the
    backbone's pretrained cfg (as timm's ``resolve_data_config`` reads it from the model being trained).

    Args:
        root: dataset folder (required; a missing folder or class tree is an error naming it).
        batch_size: per device; num_workers: loader processes; img_size: training and evaluation size.
        auto_augment: e.g. ``rand-m9-mstd0.5-inc1`` (the paper's; m12 small_gf, m15 base_gf), null = off.
        re_prob: random-erasing probability (0.25 in the paper); color_jitter: timm's (ignored with auto_augment).
        crop_pct, interpolation: evaluation crop fraction and resize interpolation (null: the backbone's cfg).
        val_size, split_seed: the carved validation split when there is no ``val/``.
        predict_dir: a folder of images for ``hornet predict`` (default: the test split).
    """

    in_chans = 3

    def __init__(
        self,
        *,
        root: str,
        batch_size: int = 128,
        num_workers: int = 4,
        img_size: int = 224,
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        re_prob: float = 0.25,
        color_jitter: float = 0.4,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        val_size: int = 10000,
        split_seed: int = 0,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir)
        self.root = Path(root).expanduser()
        train = self.root / "train"
        if not train.is_dir():
            raise FileNotFoundError(f"data.root {str(self.root)!r} has no train/ folder (expected train/<class>/*)")
        self.classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir()))
        if len(self.classes) < 2:
            raise FileNotFoundError(f"data.root {str(train)!r} needs at least two class folders; found {self.classes}")
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise ValueError(f"data.crop_pct must be in (0, 1]; got {crop_pct}")
        if not 0 <= re_prob <= 1:
            raise ValueError(f"data.re_prob must be in [0, 1]; got {re_prob}")
        self.num_classes = len(self.classes)
        self.auto_augment = auto_augment
        self.re_prob = re_prob
        self.color_jitter = color_jitter
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.val_size = val_size
        self.split_seed = split_seed

    def data_config(self) -> dict:
        """Interpolation, mean, std and crop_pct: the backbone's pretrained cfg, overridden by this module's args."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        args = {"input_size": (3, self.img_size, self.img_size)}  # explicit args win over the model's cfg
        if self.crop_pct is not None:
            args["crop_pct"] = self.crop_pct
        if self.interpolation is not None:
            args["interpolation"] = self.interpolation
        return resolve_data_config(args, model=getattr(module, "backbone", None))

    def train_transform(self) -> Callable:
        config = self.data_config()
        return create_transform(
            config["input_size"],
            is_training=True,
            auto_augment=self.auto_augment,
            re_prob=self.re_prob,
            color_jitter=self.color_jitter,
            interpolation="random" if config["interpolation"] == "bicubic" else config["interpolation"],
            mean=config["mean"],
            std=config["std"],
        )

    def eval_transform(self) -> Callable:
        config = self.data_config()
        return create_transform(
            config["input_size"],
            is_training=False,
            interpolation=config["interpolation"],
            mean=config["mean"],
            std=config["std"],
            crop_pct=config["crop_pct"],
        )

    def _folder(self, split: str, transform: Callable) -> ImageFolder:
        folder = ImageFolder(str(self.root / split), transform=transform)
        if tuple(folder.classes) != self.classes:
            raise FileNotFoundError(f"{self.root / split} has classes {folder.classes[:5]}... unlike train/")
        return folder

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_transform, eval_transform = self.train_transform(), self.eval_transform()
        if (self.root / "val").is_dir():
            self.train_set = self._folder("train", train_transform)
            self.val_set = self._folder("val", eval_transform)
        else:  # the same files twice (train vs eval transform), split by index
            train, _ = split_train_val(self._folder("train", train_transform), self.val_size, self.split_seed)
            _, val = split_train_val(self._folder("train", eval_transform), self.val_size, self.split_seed)
            self.train_set, self.val_set = train, val
        self.test_set = self._folder("test", eval_transform) if (self.root / "test").is_dir() else self.val_set

"""ImageFolder / ImageNet layout with timm's transform pipeline (RandAugment, random erasing, crop_pct)."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from timm.data import create_transform
from torchvision.datasets import ImageFolder

from hornet.data.base import ClassificationDataModule, split_train_val

__all__ = ["CheckedImageFolder", "CorruptImageError", "ImageFolderDataModule"]


class CorruptImageError(ValueError):
    """An image file that PIL cannot decode (corrupt, truncated, not an image)."""


class CheckedImageFolder(ImageFolder):
    """torchvision's ImageFolder whose unreadable files are reported with their path, or skipped and counted.

    With ``skip_corrupt`` an unreadable file is replaced by the next readable one (the batch keeps its size), warned
    about once with its path, and marked in a byte-per-file table shared with the DataLoader's worker processes, so
    ``skipped`` counts distinct files whichever process met them.
    """

    def __init__(self, root: str, transform: Callable, *, skip_corrupt: bool = False) -> None:
        try:
            super().__init__(root, transform=transform)
        except FileNotFoundError as err:  # torchvision's message names the classes, not the folder
            raise FileNotFoundError(f"{root}: {err}") from None
        self.skip_corrupt = skip_corrupt
        self.corrupt = multiprocessing.get_context().RawArray("b", len(self.samples))  # 1 = known unreadable

    @property
    def skipped(self) -> int:
        return bytes(self.corrupt).count(1)

    def load(self, index: int) -> Image.Image | None:
        """The image at ``index`` as RGB; None when it is unreadable and ``skip_corrupt`` is on."""
        if self.corrupt[index]:
            return None
        path = self.samples[index][0]
        try:
            with open(path, "rb") as handle:
                return Image.open(handle).convert("RGB")  # decodes every pixel: a truncated file fails here
        except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for undecodable data
            reason = " ".join(str(err).split())
            if not self.skip_corrupt:
                raise CorruptImageError(
                    f"corrupt or truncated image {path} ({reason}); set data.skip_corrupt: true to skip such files"
                ) from None
            self.corrupt[index] = 1
            warnings.warn(f"data.skip_corrupt: skipped {path} ({reason})", stacklevel=1)
            return None

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            candidate = (index + offset) % len(self.samples)
            image = self.load(candidate)
            if image is not None:
                target = self.samples[candidate][1]
                return self.transform(image) if self.transform else image, target
        raise CorruptImageError(f"{self.root}: not one readable image")


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
        skip_corrupt: skip files PIL cannot decode (each is warned about with its path and counted) instead of
            stopping at the first one with an error that names it.
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
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir)
        self.root = Path(root).expanduser()
        train = self.root / "train"
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root {str(self.root)!r} does not exist or is not a folder")
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
        self.skip_corrupt = skip_corrupt
        self.folders: list[CheckedImageFolder] = []

    def data_config(self) -> dict:
        """Interpolation, mean, std and crop_pct: the backbone's pretrained cfg, overridden by this module's args."""
        args = {"input_size": (3, self.img_size, self.img_size)}  # explicit args win over the model's cfg
        if self.crop_pct is not None:
            args["crop_pct"] = self.crop_pct
        if self.interpolation is not None:
            args["interpolation"] = self.interpolation
        return self.backbone_data_config(**args)

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

    def _folder(self, split: str, transform: Callable) -> CheckedImageFolder:
        folder = CheckedImageFolder(str(self.root / split), transform=transform, skip_corrupt=self.skip_corrupt)
        if tuple(folder.classes) != self.classes:
            raise FileNotFoundError(f"{self.root / split} has classes {folder.classes[:5]}... unlike train/")
        self.folders.append(folder)
        return folder

    @property
    def skipped_images(self) -> int:
        """Distinct corrupt files skipped so far (``skip_corrupt``), over every split and loader process."""
        return len({path for folder in self.folders for (path, _), bad in zip(folder.samples, folder.corrupt) if bad})

    def teardown(self, stage: str) -> None:
        if self.skipped_images and (self.trainer is None or self.trainer.is_global_zero):
            message = f"data.skip_corrupt: {self.skipped_images} corrupt images skipped (paths warned above)"
            warnings.warn(message, stacklevel=2)

    def setup(self, stage: str | None = None) -> None:
        held_out = next((self.root / split for split in ("test", "val") if (self.root / split).is_dir()), None)
        if stage in ("test", "predict") and self.test_set is None and held_out is not None:
            self.test_set = self._folder(held_out.name, self.eval_transform())  # train/ not read (ImageNet's 1.28M)
            return
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

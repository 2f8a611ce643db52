"""Shared pieces of the image-classification DataModules: loaders, the fixed validation split, global batch size."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sized
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision.transforms import functional as TF

__all__ = ["ClassificationDataModule", "EpochShuffleSampler", "ImageFiles", "run_seed", "split_train_val"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def run_seed() -> int:
    """The run's seed as Lightning's seed_everything recorded it (0 when unseeded)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a run resumed at an epoch boundary sees the same order.

    Lightning calls ``set_epoch`` before every training epoch (and wraps this sampler for distributed runs).
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        self.size = len(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def split_train_val(dataset: Dataset, val_size: int, split_seed: int) -> tuple[Subset, Subset]:
    """A fixed train/val split carved from ``dataset`` by its own seed (independent of the run seed)."""
    total = len(dataset)
    if not 0 < val_size < total:
        raise ValueError(f"data.val_size must be in [1, {total - 1}] for a training set of {total}; got {val_size}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return Subset(dataset, order[val_size:]), Subset(dataset, order[:val_size])


class ImageFiles(Dataset):
    """Every image file under ``root`` (recursively, sorted), for prediction: yields (image tensor, index)."""

    def __init__(self, root: str | os.PathLike, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.predict_dir {str(self.root)!r} is not a folder")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            suffixes = ", ".join(IMAGE_SUFFIXES)
            raise FileNotFoundError(f"data.predict_dir {str(self.root)!r} holds no images ({suffixes})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            return self.transform(image), index


class ClassificationDataModule(L.LightningDataModule):
    """Base for the image-classification DataModules.

    Subclasses set ``num_classes``, ``in_chans`` and the datasets ``train_set``, ``val_set``, ``test_set`` in
    ``setup``. ``batch_size`` is per device; ``global_batch_size`` multiplies in devices, nodes and accumulation.
    ``hornet predict`` reads ``predict_dir`` (a folder of images, through ``eval_transform``) or else the test split.
    """

    num_classes: int
    in_chans: int

    def __init__(self, *, batch_size: int, num_workers: int, img_size: int, predict_dir: str | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer; got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0; got {num_workers}")
        if img_size < 8:
            raise ValueError(f"data.img_size must be >= 8; got {img_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.img_size = img_size
        self.predict_dir = predict_dir
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def global_batch_size(self) -> int:
        trainer = self.trainer
        if trainer is None:
            return self.batch_size
        return self.batch_size * trainer.world_size * trainer.accumulate_grad_batches

    def _loader(self, dataset: Dataset | None, *, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not created this split")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(dataset, run_seed()) if train else None,
            drop_last=train,  # Mixup/CutMix need full, even batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def eval_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image -> model input (C, img_size, img_size), as the evaluation data is prepared."""
        mode = "L" if self.in_chans == 1 else "RGB"
        return lambda image: TF.to_tensor(image.convert(mode).resize((self.img_size, self.img_size), Image.BILINEAR))

    @property
    def predict_set(self) -> Dataset:
        if self.predict_dir is not None:
            return ImageFiles(self.predict_dir, self.eval_transform())
        return self.test_set

    def predict_names(self, dataset: Dataset) -> list[str] | None:
        """The file of each predicted row when predicting a folder (None for the test split: rows are indices)."""
        return [str(p) for p in dataset.files] if isinstance(dataset, ImageFiles) else None

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False)

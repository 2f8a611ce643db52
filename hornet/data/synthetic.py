"""A synthetic, learnable image-classification dataset for smoke tests and benchmarks (no files needed)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from hornet.data.base import ClassificationDataModule

__all__ = ["SyntheticDataModule"]


class SyntheticDataModule(ClassificationDataModule):
    """Gaussian noise around one fixed random pattern per class: separable, so a model can learn it.

    Args:
        num_classes: classes; in_chans: channels; img_size: square size.
        train_size / val_size / test_size: images per split; noise: std of the noise around the patterns.
        seed: the generator seed of the patterns and samples (independent of the run seed).
        predict_dir: a folder of images for ``hornet predict`` (default: the test split).
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        batch_size: int = 32,
        num_workers: int = 0,
        train_size: int = 512,
        val_size: int = 128,
        test_size: int = 128,
        noise: float = 1.0,
        seed: int = 0,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir)
        if num_classes < 2:
            raise ValueError(f"data.num_classes must be >= 2; got {num_classes}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.noise = noise
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        patterns = torch.randn(self.num_classes, self.in_chans, self.img_size, self.img_size, generator=generator)
        splits = {}
        for split, size in self.sizes.items():
            labels = torch.randint(0, self.num_classes, (size,), generator=generator)
            noise = torch.randn(size, self.in_chans, self.img_size, self.img_size, generator=generator)
            splits[split] = TensorDataset(patterns[labels] + self.noise * noise, labels)
        self.train_set, self.val_set, self.test_set = splits["train"], splits["val"], splits["test"]

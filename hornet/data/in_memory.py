"""Small datasets held as one tensor (Fashion-MNIST, CIFAR): a fixed val split, batch augmentation on the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision.transforms import functional as TF

from hornet.data.base import ClassificationDataModule, run_seed, split_train_val

__all__ = ["AUGMENTATIONS", "Augment", "InMemoryDataModule", "random_crop_flip"]

Augment = Literal["none", "flip", "crop_flip"]
AUGMENTATIONS = ("none", "flip", "crop_flip")
NORMALISED: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (class, source, split, img_size) -> (images, labels)


class InMemoryDataModule(ClassificationDataModule):
    """Base for datasets small enough to keep in memory as normalised tensors.

    Subclasses set ``num_classes``, ``in_chans``, ``native_size``, ``mean``, ``std`` and implement ``load(split)``
    (``split`` is "train" or "test") returning uint8 images (N, C, H, W) and int64 labels (N,), and ``source()``
    naming where they come from. A process keeps the splits it has normalised (``NORMALISED``): the runs of a suite
    read and convert them once.
    Training batches are augmented on the device by ``augment``: ``crop_flip`` (a random translation by up to 4 px
    and a horizontal flip), ``flip`` (the flip only) or ``none``. The draws are seeded by (run seed, step), so a
    resumed run sees the same augmentations as an uninterrupted one.
    """

    native_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        *,
        batch_size: int,
        num_workers: int,
        img_size: int,
        val_size: int,
        split_seed: int,
        augment: Augment,
        limit_train: int | None,
        predict_dir: str | None,
        eval_batch_size: int | None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir,
            eval_batch_size=eval_batch_size,
        )  # fmt: skip
        self.val_size = val_size
        self.split_seed = split_seed
        if augment not in AUGMENTATIONS:
            raise ValueError(f"data.augment must be one of {AUGMENTATIONS}; got {augment!r}")
        self.augment = augment
        self.limit_train = limit_train

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def source(self) -> str:
        """Where ``load`` reads from (a resolved folder): with the split and size, the key of the normalised cache."""
        raise NotImplementedError

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, native, native) floats in [0, 1] -> padded or resized to img_size, normalised."""
        pad = self.img_size - self.native_size
        if 0 < pad <= 8:  # pad symmetrically: 28 -> 32 keeps every pixel and gives stage maps 16/8/4/2
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        elif pad != 0:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def _dataset(self, split: str) -> Dataset:
        """The split as normalised tensors, from this process's cache when it has converted them before (the
        tensors are only read: batches are new tensors, augmented on the device)."""
        key = (type(self).__qualname__, self.source(), split, self.img_size)
        if key not in NORMALISED:
            images, labels = self.load(split)
            if len(NORMALISED) >= 4:
                NORMALISED.pop(next(iter(NORMALISED)))  # the oldest: a few splits at a time are plenty
            NORMALISED[key] = (self._normalise(images.float().div_(255.0)), labels)
        return TensorDataset(*NORMALISED[key])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self._dataset("train")
        self.train_set, self.val_set = split_train_val(train, self.val_size, self.split_seed)
        if self.limit_train is not None:
            self.train_set = Subset(self.train_set, range(min(self.limit_train, len(self.train_set))))
        self.test_set = self._dataset("test")

    def eval_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        mode = "L" if self.in_chans == 1 else "RGB"

        def transform(image: Image.Image) -> torch.Tensor:
            image = image.convert(mode).resize((self.native_size, self.native_size), Image.BILINEAR)
            return self._normalise(TF.pil_to_tensor(image).float().div_(255.0)[None])[0]

        return transform

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.augment == "none" or self.trainer is None or not self.trainer.training:
            return batch
        if not isinstance(batch, (tuple, list)):  # the model summary's example input, not a training batch
            return batch
        x, y = batch
        generator = torch.Generator(device=x.device).manual_seed(run_seed() * 1_000_003 + self.trainer.global_step)
        fill = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=x.device)
        padding = 4 if self.augment == "crop_flip" else 0
        return random_crop_flip(x, padding=padding, fill=fill, generator=generator), y


def random_crop_flip(
    x: torch.Tensor,
    *,
    padding: int,
    fill: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image random translation by up to ``padding`` px and horizontal flip, on a (B, C, H, W) batch.

    ``fill`` is the padding value, a scalar or one value per channel (the normalised black).
    """
    batch, channels, height, width = x.shape
    padded = x.new_empty(batch, channels, height + 2 * padding, width + 2 * padding)
    padded.copy_(torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1, 1, 1).expand_as(padded[0]))
    padded[:, :, padding : padding + height, padding : padding + width] = x
    padded = padded.permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    dy = torch.randint(0, 2 * padding + 1, (batch,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, :]  # (B, 1, W)
    batch_index = torch.arange(batch, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded[batch_index, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    flip = torch.rand(batch, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)

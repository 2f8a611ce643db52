"""Fashion-MNIST, the embedded default dataset: read from IDX files, kept in memory, augmented on the batch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from hornet.data.base import ClassificationDataModule, run_seed, split_train_val

__all__ = ["DEBIAN_FASHION_MNIST", "FashionMNISTDataModule", "read_idx", "resolve_fashion_mnist_root"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MEAN, STD = 0.2860, 0.3530  # of the training images, scaled to [0, 1]
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a numpy array: uint8 images (N, H, W) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {payload.size}")
    return payload.reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def _has_files(root: Path) -> bool:
    return all(_find(root, stem) for pair in FILES.values() for stem in pair)


def resolve_fashion_mnist_root(root: str | os.PathLike | None, *, download: bool = False) -> Path:
    """Where the IDX files are: an explicit root, else $HORNET_DATA_DIR, else the Debian package, else a download."""
    if root is not None:
        path = Path(root).expanduser()
        if _has_files(path):
            return path
        if download:
            return _download(path)
        raise FileNotFoundError(
            f"data.root {str(path)!r} holds no Fashion-MNIST IDX files ({', '.join(FILES['train'])}, ...); "
            "fix the path, or set data.download: true to fetch them there"
        )
    candidates = [Path(os.environ["HORNET_DATA_DIR"]).expanduser()] if os.environ.get("HORNET_DATA_DIR") else []
    candidates += [DEBIAN_FASHION_MNIST]
    for path in candidates:
        for sub in (path, path / "fashion-mnist", path / "FashionMNIST" / "raw"):
            if _has_files(sub):
                return sub
    if download:
        return _download(Path(os.environ.get("HORNET_DATA_DIR", "data")) / "fashion-mnist")
    raise FileNotFoundError(
        "Fashion-MNIST not found. Options: install Debian's dataset-fashion-mnist (files in "
        f"{DEBIAN_FASHION_MNIST}), set HORNET_DATA_DIR or data.root to a folder with the IDX files, "
        "or set data.download: true when online"
    )


def _download(path: Path) -> Path:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(path), train=True, download=True)
        FashionMNIST(str(path), train=False, download=True)
    except Exception as err:
        raise FileNotFoundError(f"could not download Fashion-MNIST into {path}: {err}") from None
    return path / "FashionMNIST" / "raw"


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_stem, labels_stem = FILES[split]
    images = torch.from_numpy(read_idx(_find(root, images_stem)).copy())  # (N, 28, 28) uint8
    labels = torch.from_numpy(read_idx(_find(root, labels_stem)).astype(np.int64))  # (N,)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels


class FashionMNISTDataModule(ClassificationDataModule):
    """Fashion-MNIST (10 classes, 1 channel), padded or resized to ``img_size``.

    Args:
        root: folder with the IDX files; None searches $HORNET_DATA_DIR, then the Debian package's folder.
        batch_size: per device.
        num_workers: loader processes (0 is fastest here: the data is an in-memory tensor).
        img_size: 28 keeps the images as they are, larger sizes zero-pad up to 36 px and resize beyond.
        val_size: images carved from the training set for validation, by ``split_seed``.
        augment: random crop (4 px padding) and horizontal flip on training batches.
        download: fetch the files with torchvision when they are nowhere on disk.
        limit_train: use only the first N training images after the split (quick runs and tests).
    """

    num_classes = 10
    in_chans = 1
    classes = CLASSES

    def __init__(
        self,
        *,
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        img_size: int = 32,
        val_size: int = 5000,
        split_seed: int = 0,
        augment: bool = True,
        download: bool = False,
        limit_train: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, img_size=img_size)
        self.root = root
        self.val_size = val_size
        self.split_seed = split_seed
        self.augment = augment
        self.download = download
        self.limit_train = limit_train

    def prepare_data(self) -> None:
        resolve_fashion_mnist_root(self.root, download=self.download)

    def _dataset(self, images: torch.Tensor, labels: torch.Tensor) -> Dataset:
        x = images.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28) in [0, 1]
        if self.img_size != 28:
            pad = self.img_size - 28
            if 0 < pad <= 8:  # pad symmetrically: 32 px keeps every pixel and gives stage maps 16/8/4/2
                x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
            else:
                x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return TensorDataset((x - MEAN) / STD, labels)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        root = resolve_fashion_mnist_root(self.root, download=self.download)
        train = self._dataset(*load_split(root, "train"))
        self.train_set, self.val_set = split_train_val(train, self.val_size, self.split_seed)
        if self.limit_train is not None:
            self.train_set = torch.utils.data.Subset(self.train_set, range(min(self.limit_train, len(self.train_set))))
        self.test_set = self._dataset(*load_split(root, "test"))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not (self.augment and self.trainer is not None and self.trainer.training):
            return batch
        x, y = batch
        # seeded by (run seed, step): a resumed run draws the same augmentations as an uninterrupted one
        generator = torch.Generator(device=x.device).manual_seed(run_seed() * 1_000_003 + self.trainer.global_step)
        return random_crop_flip(x, padding=4, fill=-MEAN / STD, generator=generator), y


def random_crop_flip(
    x: torch.Tensor, *, padding: int, fill: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-image random translation by up to ``padding`` px and horizontal flip, on a (B, C, H, W) batch."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4, value=fill).permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    dy = torch.randint(0, 2 * padding + 1, (batch,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(height, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, :]  # (B, 1, W)
    batch_index = torch.arange(batch, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded[batch_index, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    flip = torch.rand(batch, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)

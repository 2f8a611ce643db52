"""Fashion-MNIST, the embedded default dataset: read from IDX files, kept in memory, augmented on the batch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from hornet.data.in_memory import Augment, InMemoryDataModule

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


class FashionMNISTDataModule(InMemoryDataModule):
    """Fashion-MNIST (10 classes, 1 channel, 28 px), padded or resized to ``img_size``.

    Args:
        root: folder with the IDX files; None searches $HORNET_DATA_DIR, then the Debian package's folder.
        batch_size: per device.
        num_workers: loader processes (0 is fastest here: the data is an in-memory tensor).
        img_size: 28 keeps the images as they are; 29-36 zero-pads symmetrically; other sizes resize.
        val_size: images carved from the training set for validation, by ``split_seed``.
        split_seed: seed of that split, independent of the run seed.
        augment: ``crop_flip`` (random 4 px translation and horizontal flip), ``flip`` or ``none``, on training batches.
        download: fetch the files with torchvision when they are nowhere on disk.
        limit_train: use only the first N training images after the split (quick runs and tests).
        predict_dir: a folder of image files for ``hornet predict`` (default: the test split).
        eval_batch_size: images per batch in validation, test and prediction (null: ``batch_size``); 512 small
            images at a time evaluate about a third faster on a CPU than 128.
    """

    num_classes = 10
    in_chans = 1
    native_size = 28
    mean, std = (MEAN,), (STD,)
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
        augment: Augment = "crop_flip",
        download: bool = False,
        limit_train: int | None = None,
        predict_dir: str | None = None,
        eval_batch_size: int | None = 512,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            img_size=img_size,
            val_size=val_size,
            split_seed=split_seed,
            augment=augment,
            limit_train=limit_train,
            predict_dir=predict_dir,
            eval_batch_size=eval_batch_size,
        )
        self.root = root
        self.download = download

    def prepare_data(self) -> None:
        resolve_fashion_mnist_root(self.root, download=self.download)

    def source(self) -> str:
        return str(resolve_fashion_mnist_root(self.root, download=self.download).resolve())

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        root = resolve_fashion_mnist_root(self.root, download=self.download)
        images, labels = load_split(root, split)
        return images.unsqueeze(1), labels  # (N, 1, 28, 28) uint8, (N,)

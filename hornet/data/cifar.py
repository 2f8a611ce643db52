"""CIFAR-10 / CIFAR-100 from the python-pickle release (the layout torchvision downloads), kept in memory."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from hornet.data.in_memory import Augment, InMemoryDataModule

__all__ = ["CIFAR_LAYOUTS", "CIFARDataModule"]

# folder, training files, test file, label key, class-name file and key, per-channel mean and std (of train)
CIFAR_LAYOUTS = {
    "cifar10": dict(
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        label_key=b"labels",
        meta=("batches.meta", b"label_names"),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        num_classes=10,
    ),
    "cifar100": dict(
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        label_key=b"fine_labels",
        meta=("meta", b"fine_label_names"),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        num_classes=100,
    ),
}


def _unpickle(path: Path) -> dict:
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="bytes")


class CIFARDataModule(InMemoryDataModule):
    """CIFAR-10 or CIFAR-100 (3 channels, 32 px), with 5000 training images held out for validation.

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: the folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (or that folder itself);
            None means $HORNET_DATA_DIR, else ``./data``.
        download: fetch the archive with torchvision into ``root`` when the files are missing (needs internet).
        batch_size, num_workers, img_size, val_size, split_seed, augment, limit_train, predict_dir,
            eval_batch_size: as for Fashion-MNIST; img_size 32 keeps the images as they are.
    """

    in_chans = 3
    native_size = 32

    def __init__(
        self,
        *,
        name: Literal["cifar10", "cifar100"] = "cifar10",
        root: str | None = None,
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        img_size: int = 32,
        val_size: int = 5000,
        split_seed: int = 0,
        augment: Augment = "crop_flip",
        limit_train: int | None = None,
        predict_dir: str | None = None,
        eval_batch_size: int | None = 512,
    ) -> None:
        if name not in CIFAR_LAYOUTS:
            raise ValueError(f"data.name must be one of {sorted(CIFAR_LAYOUTS)}; got {name!r}")
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
        self.name = name
        self.layout = CIFAR_LAYOUTS[name]
        self.num_classes = self.layout["num_classes"]
        self.mean, self.std = self.layout["mean"], self.layout["std"]
        self.root = root
        self.download = download
        self._classes: tuple[str, ...] | None = None

    def _base(self) -> Path:
        if self.root is not None:
            return Path(self.root).expanduser()
        return Path(os.environ.get("HORNET_DATA_DIR") or "data").expanduser()

    def _folder(self) -> Path | None:
        base = self._base()
        names = self.layout["train"] + self.layout["test"]
        for folder in (base / self.layout["folder"], base):
            if all((folder / n).is_file() for n in names):
                return folder
        return None

    def prepare_data(self) -> None:
        if self._folder() is not None:
            return
        if not self.download:
            raise FileNotFoundError(
                f"data.root {str(self._base())!r} holds no {self.name} ({self.layout['folder']}/ with "
                f"{', '.join(self.layout['test'] + self.layout['train'][:1])}, ...); fix the path or set "
                "data.download: true to fetch it there with torchvision"
            )
        from torchvision.datasets import CIFAR10, CIFAR100

        dataset = CIFAR10 if self.name == "cifar10" else CIFAR100
        try:
            dataset(str(self._base()), train=True, download=True)
        except Exception as err:
            raise FileNotFoundError(f"could not download {self.name} into {self._base()}: {err}") from None

    @property
    def classes(self) -> tuple[str, ...]:
        if self._classes is None:
            self.prepare_data()
            meta_file, key = self.layout["meta"]
            self._classes = tuple(n.decode() for n in _unpickle(self._folder() / meta_file)[key])
        return self._classes

    def source(self) -> str:
        self.prepare_data()
        return f"{self.name}:{self._folder().resolve()}"

    def load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare_data()
        folder = self._folder()
        images, labels = [], []
        for name in self.layout[split]:
            entry = _unpickle(folder / name)
            images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[self.layout["label_key"]])
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

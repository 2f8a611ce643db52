"""ADE20K (SceneParsing, ADEChallengeData2016 layout) for users with their own copy: 150 classes.

Layout under ``root``: ``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png`` (label
maps with the same stems). With ``reduce_zero_label`` (ADE20K's convention, as released) label 0 ("other") becomes
255 (ignored) and labels 1-150 become 0-149. Validation is carved from ``images/training`` by ``val_size`` images
(hyperparameters are chosen on it); ``images/validation`` is the test split, as papers report it.

Training pipeline as mmseg's ADE20K config: resize to ``scale`` (long, short) times a ratio drawn from
``ratio_range`` keeping the aspect, a random ``img_size`` crop whose largest class covers at most
``cat_max_ratio`` of it (10 tries), a horizontal flip with probability 0.5, normalisation with the backbone's mean and
std (its pretrained cfg), padding to the crop (image 0, label 255). Evaluation: resized to ``scale`` keeping the
aspect (the label by nearest neighbour; mmseg scores at the original size instead), padded to the batch's largest
image with ignored labels.
Sliding-window inference is the model's (``model.inference: slide``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import functional as TF

from hornet.data.base import IGNORE_INDEX, SegmentationDataModule, split_train_val

__all__ = ["ADE20KDataModule", "SegmentationFiles", "pad_collate"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _resize_keep_ratio(image: Image.Image, label: Image.Image, scale: tuple[int, int], ratio: float):
    """Both resized by the largest factor keeping long side <= scale[0] * ratio and short side <= scale[1] * ratio."""
    long_side, short_side = max(image.size), min(image.size)
    factor = min(scale[0] * ratio / long_side, scale[1] * ratio / short_side)
    size = (max(round(image.width * factor), 1), max(round(image.height * factor), 1))
    return image.resize(size, Image.BILINEAR), label.resize(size, Image.NEAREST)


class SegmentationFiles(Dataset):
    """(image, label map) file pairs; ``train`` picks the training pipeline, else the evaluation one."""

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        *,
        train: bool,
        crop: int,
        scale: tuple[int, int],
        ratio_range: tuple[float, float],
        cat_max_ratio: float,
        reduce_zero_label: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.pairs, self.train, self.crop = pairs, train, crop
        self.mean, self.std = mean, std  # the backbone's normalisation
        self.scale, self.ratio_range, self.cat_max_ratio = scale, ratio_range, cat_max_ratio
        self.reduce_zero_label = reduce_zero_label

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> tuple[Image.Image, Image.Image]:
        image_path, label_path = self.pairs[index]
        with Image.open(image_path) as image, Image.open(label_path) as label:
            if image.size != label.size:
                raise ValueError(
                    f"label map {label_path} is {label.size[0]}x{label.size[1]} but its image {image_path} is "
                    f"{image.size[0]}x{image.size[1]}: every label map must have its image's size"
                )
            return image.convert("RGB"), label.copy()

    def _label_tensor(self, label: Image.Image) -> torch.Tensor:
        values = torch.from_numpy(np.array(label, dtype=np.int64))  # (H, W)
        if values.ndim != 2:
            raise ValueError(f"label maps must have one channel of class ids; got shape {tuple(values.shape)}")
        if self.reduce_zero_label:
            values = torch.where(values == 0, IGNORE_INDEX, values - 1)
            values[values == IGNORE_INDEX - 1] = IGNORE_INDEX  # 255 stays ignored
        return values

    def _crop_box(self, labels: torch.Tensor) -> tuple[int, int]:
        height, width = labels.shape
        top = left = 0
        for _ in range(10):
            top = random.randint(0, max(height - self.crop, 0))
            left = random.randint(0, max(width - self.crop, 0))
            window = labels[top : top + self.crop, left : left + self.crop]
            counts = torch.bincount(window[window != IGNORE_INDEX].flatten(), minlength=1)
            if len(counts) > 1 and counts.max() < self.cat_max_ratio * counts.sum():
                break
        return top, left

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self._load(index)
        ratio = random.uniform(*self.ratio_range) if self.train else 1.0
        image, label = _resize_keep_ratio(image, label, self.scale, ratio)
        x = TF.normalize(TF.to_tensor(image), self.mean, self.std)  # (3, H, W)
        y = self._label_tensor(label)  # (H, W)
        if self.train:
            top, left = self._crop_box(y)
            x = x[:, top : top + self.crop, left : left + self.crop]
            y = y[top : top + self.crop, left : left + self.crop]
            if random.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            pad = (0, self.crop - x.shape[-1], 0, self.crop - x.shape[-2])  # right, bottom
            x, y = F.pad(x, pad, value=0.0), F.pad(y, pad, value=IGNORE_INDEX)
        return x, y


def pad_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images of different sizes, padded to the largest (image 0 right and bottom, label ignored); (image,
    index) pairs of a predicted folder are stacked as they are."""
    if not isinstance(batch[0][1], torch.Tensor):
        return default_collate(batch)
    height = max(x.shape[-2] for x, _ in batch)
    width = max(x.shape[-1] for x, _ in batch)
    images = [F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2])) for x, _ in batch]
    labels = [F.pad(y, (0, width - y.shape[-1], 0, height - y.shape[-2]), value=IGNORE_INDEX) for _, y in batch]
    return torch.stack(images), torch.stack(labels)  # (B, 3, H, W), (B, H, W)


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K semantic segmentation (see the module docstring).

    Args:
        root: the ADEChallengeData2016 folder (``images/``, ``annotations/``).
        batch_size: per device (the released 16 per step is 8 GPUs x 2); ``eval_batch_size`` for evaluation.
        img_size: the training crop (512 as released).
        scale: (long, short) sides images are resized to before the ratio (2048, 512 as released).
        ratio_range: range of the training resize ratio (0.5-2.0 as released).
        cat_max_ratio: the largest share of a crop one class may cover (0.75 as released).
        reduce_zero_label: map 0 to ignored and 1-150 to 0-149 (ADE20K's convention).
        val_size: training images held out for validation, by ``split_seed``.
        limit_train: use only the first N training images (quick runs).
    """

    num_classes = 150
    in_chans = 3
    collate_fn = staticmethod(pad_collate)  # evaluation images differ in size; training crops are padded already

    def __init__(
        self,
        *,
        root: str,
        batch_size: int = 2,
        eval_batch_size: int | None = 1,
        num_workers: int = 4,
        img_size: int = 512,
        scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        reduce_zero_label: bool = True,
        val_size: int = 1000,
        split_seed: int = 0,
        limit_train: int | None = None,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir,
            eval_batch_size=eval_batch_size,
        )  # fmt: skip
        if not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"data.ratio_range must be (low, high) with 0 < low <= high; got {tuple(ratio_range)}")
        self.root = Path(root).expanduser()
        self.scale, self.ratio_range, self.cat_max_ratio = tuple(scale), tuple(ratio_range), cat_max_ratio
        self.reduce_zero_label, self.val_size, self.split_seed = reduce_zero_label, val_size, split_seed
        self.limit_train = limit_train
        self.num_classes = type(self).num_classes if reduce_zero_label else type(self).num_classes + 1

    def pairs(self, folder: str) -> list[tuple[Path, Path]]:
        """(image, label map) paths of ``images/<folder>``, each image with ``annotations/<folder>/<stem>.png``."""
        images_dir, labels_dir = self.root / "images" / folder, self.root / "annotations" / folder
        if not images_dir.is_dir() or not labels_dir.is_dir():
            raise FileNotFoundError(
                f"data.root {str(self.root)!r} is not an ADE20K folder: expected images/{folder} and "
                f"annotations/{folder} (the ADEChallengeData2016 layout)"
            )
        images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        missing = [p.name for p in images if not (labels_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise FileNotFoundError(f"{labels_dir} has no label map for {len(missing)} images, e.g. {missing[:3]}")
        return [(p, labels_dir / f"{p.stem}.png") for p in images]

    def _dataset(self, pairs: list[tuple[Path, Path]], *, train: bool) -> SegmentationFiles:
        config = self.backbone_data_config()
        return SegmentationFiles(
            pairs, train=train, crop=self.img_size, scale=self.scale, ratio_range=self.ratio_range,
            cat_max_ratio=self.cat_max_ratio, reduce_zero_label=self.reduce_zero_label, mean=config["mean"],
            std=config["std"],
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            pairs = self.pairs("training")
            train_ids, val_ids = split_train_val(range(len(pairs)), self.val_size, self.split_seed)
            train_pairs = [pairs[i] for i in train_ids][: self.limit_train]
            self.train_set = self._dataset(train_pairs, train=True)
            self.val_set = self._dataset([pairs[i] for i in val_ids], train=False)
        else:
            self.test_set = self._dataset(self.pairs("validation"), train=False)

    def eval_transform(self):
        config = self.backbone_data_config()
        return lambda image: TF.normalize(
            TF.to_tensor(_resize_keep_ratio(image.convert("RGB"), image.convert("L"), self.scale, 1.0)[0]),
            config["mean"], config["std"],
        )  # fmt: skip

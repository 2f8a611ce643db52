"""Shared pieces of the image-classification DataModules: loaders, the fixed validation split, global batch size."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sized
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler
from torchvision.transforms import functional as TF

__all__ = [
    "IGNORE_INDEX", "ClassificationDataModule", "DetectionDataModule", "EpochShuffleSampler", "ImageDataModule",
    "ImageFiles", "SegmentationDataModule", "bad_boxes", "check_boxes", "detection_collate", "resume_position",
    "run_seed", "split_train_val",
]  # fmt: skip

IGNORE_INDEX = 255  # label of pixels that no loss or metric counts (segmentation: ambiguous edges, void)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def run_seed() -> int:
    """The run's seed as Lightning's seed_everything recorded it (0 when unseeded)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochShuffleSampler(DistributedSampler):
    """A shuffle that depends only on (seed, epoch), shared out between ranks, resumable inside an epoch.

    Rank ``r`` of ``num_replicas`` takes positions r, r + num_replicas, ... of the epoch's order, so N ranks with a
    batch of b train on exactly the samples that one process with a batch of N x b does, step by step. It is a
    DistributedSampler, so Lightning does not wrap it in another (whose own shuffle would break that equivalence).
    Lightning calls ``set_epoch`` before every training epoch. ``skip`` drops this rank's first indices of ``epoch``
    once: a fit resumed from a mid-epoch checkpoint continues the epoch where the checkpoint stopped.
    """

    def __init__(
        self, data_source: Sized, seed: int, *, epoch: int = 0, skip: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:  # no DistributedSampler.__init__: it would ask the process group for what is given here
        self.dataset = data_source
        self.seed, self.epoch, self.skip = seed, epoch, skip
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.drop_last = True, True
        self.num_samples = len(data_source) // num_replicas  # a remainder of fewer than num_replicas is left out
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        mine = order[self.rank : self.total_size : self.num_replicas]
        skip, self.skip = self.skip, 0
        return iter(mine[skip:])

    def __len__(self) -> int:
        return self.num_samples  # the whole epoch, also when resumed mid-epoch: Lightning counts skipped batches done


def resume_position(checkpoint: dict) -> tuple[int, int]:
    """(epoch, batches of it already trained) where a fit resumed from a Lightning ``checkpoint`` dict goes on.

    A mid-epoch checkpoint (on exception, SLURM's hpc_ckpt) goes on inside its epoch; an end-of-epoch one at the start
    of the next. A batch whose optimizer step was taken counts as trained (``processed``), as Lightning counts it.
    """
    epoch = int(checkpoint.get("epoch", 0))
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    if not progress:
        return epoch, 0
    trained = int(progress["current"]["processed"])
    if progress.get("is_last_batch") or trained == 0:
        return (epoch + 1 if trained else epoch), 0
    return epoch, trained


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


class ImageDataModule(L.LightningDataModule):
    """Base of hornet's DataModules (classification and dense prediction): loaders, the training order, batch sizes.

    Subclasses set ``num_classes``, ``in_chans`` and the datasets ``train_set``, ``val_set``, ``test_set`` in
    ``setup``. ``batch_size`` is per device; ``global_batch_size`` multiplies in devices, nodes and accumulation.
    ``eval_batch_size`` (default: ``batch_size``) is the batch of validation, test and prediction, which keep no
    activations for a backward pass and so can take more images at a time.
    ``hornet predict`` reads ``predict_dir`` (a folder of images, through ``eval_transform``) or else the test split.
    """

    num_classes: int
    in_chans: int
    collate_fn: Callable | None = None  # the loaders' collate function (None: PyTorch's default)
    # the model whose pretrained cfg the transforms follow when no Trainer is attached (an analysis of a timm model)
    transform_model: torch.nn.Module | None = None

    def __init__(
        self,
        *,
        batch_size: int,
        num_workers: int,
        img_size: int,
        predict_dir: str | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer; got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"data.eval_batch_size must be a positive integer or null; got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0; got {num_workers}")
        if img_size < 8:
            raise ValueError(f"data.img_size must be >= 8; got {img_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.img_size = img_size
        self.predict_dir = predict_dir
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.resume_at: tuple[int, int] = (0, 0)  # (epoch, batches trained in it), set by `hornet fit --ckpt_path`

    @property
    def global_batch_size(self) -> int:
        trainer = self.trainer
        if trainer is None:
            return self.batch_size
        return self.batch_size * trainer.world_size * trainer.accumulate_grad_batches

    def _loader(self, dataset: Dataset | None, *, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not created this split")
        sampler = None
        if train:
            # a resumed fit starts in its checkpoint's epoch (also for worker processes, which draw the order before
            # Lightning's set_epoch), mid-epoch past the batches each rank already trained
            epoch, done = self.resume_at
            trainer = self.trainer
            sampler = EpochShuffleSampler(
                dataset, run_seed(), epoch=epoch, skip=done * self.batch_size,
                num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
            )  # fmt: skip
            self.resume_at = (0, 0)  # once: the first training loader of the fit
            if len(sampler) < self.batch_size:  # every batch would be the partial last one, which is dropped
                per_device = f" per device ({sampler.num_replicas} devices)" if sampler.num_replicas > 1 else ""
                raise ValueError(
                    f"data: {len(sampler)} training images{per_device} make no batch of data.batch_size "
                    f"{self.batch_size} (a partial last batch is dropped): set data.batch_size to at most "
                    f"{max(len(sampler), 1)}, or train on more images"
                )
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train,  # Mixup/CutMix need full, even batches
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def backbone_data_config(self, **args) -> dict:
        """timm's data config (input size, interpolation, mean, std, crop_pct) of the backbone being trained, as its
        pretrained cfg states it (timm's ``resolve_data_config``), ``args`` winning: every task normalises its images
        as its backbone expects (ImageNet's mean and std when no model is attached yet)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        backbone = getattr(module, "backbone", None) if module is not None else self.transform_model
        if backbone is None:  # timm's defaults: ImageNet's
            args = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, **args}
        return resolve_data_config(args, model=backbone)

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


class ClassificationDataModule(ImageDataModule):
    """Base of the image-classification DataModules: samples are (image, class index) pairs; ``classes`` names them
    when known."""


class SegmentationDataModule(ImageDataModule):
    """Base of the semantic-segmentation DataModules: samples are (image (C, H, W), label map (H, W) int64) pairs,
    labels in [0, num_classes) or ``IGNORE_INDEX``; ``classes`` names them."""

    ignore_index = IGNORE_INDEX
    classes: tuple[str, ...] = ()


def detection_collate(batch: list[tuple[torch.Tensor, object]]) -> tuple[list[torch.Tensor], list]:
    """Detection batches stay lists: images differ in size (the detector resizes and pads them), targets in length."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def bad_boxes(boxes: torch.Tensor, height, width, tolerance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks (N,) of the (N, 4) x1, y1, x2, y2 ``boxes`` with no area and of those outside their image (``height``,
    ``width``: numbers, or (N,) tensors, one image size per box), ``tolerance`` px past the edge allowed."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    empty = (x2 <= x1) | (y2 <= y1)
    outside = (x1 < -tolerance) | (y1 < -tolerance) | (x2 > width + tolerance) | (y2 > height + tolerance)
    return empty, outside


def check_boxes(boxes: torch.Tensor, height: int, width: int, *, where: str, tolerance: float = 1.0) -> None:
    """A ValueError naming ``where`` unless every (x1, y1, x2, y2) box has a positive area and lies in the
    ``width x height`` image (``tolerance`` px past the edge allowed, as annotation tools round)."""
    if boxes.numel() == 0:
        return
    empty, outside = bad_boxes(boxes, height, width, tolerance)
    for problem, bad in (("has zero area", empty), (f"lies outside the {width}x{height} image", outside)):
        if bad.any():
            box = [round(v, 2) for v in boxes[bad][0].tolist()]
            raise ValueError(f"{where}: box {box} (x1, y1, x2, y2) {problem}")


class DetectionDataModule(ImageDataModule):
    """Base of the detection DataModules: samples are (image (C, H, W) normalised, target) pairs, the target a dict
    of ``boxes`` (N, 4) float (x1, y1, x2, y2) in pixels, ``labels`` (N,) int64 in 1..num_classes (0 is the
    detector's background) and, for instance segmentation, ``masks`` (N, H, W) uint8. ``classes`` names labels
    1..num_classes in order. Batches are (list of images, list of targets) (``detection_collate``)."""

    classes: tuple[str, ...] = ()
    collate_fn = staticmethod(detection_collate)

    def category_ids(self) -> dict[int, int]:
        """Label (1..K) -> the data's own category id: a COCO file's, or the label itself where there is none."""
        return {label: label for label in range(1, self.num_classes + 1)}

    def annotation_file(self) -> Path | None:
        """The test split's COCO annotation file, when the data has one of its own (None: `hornet predict` writes the
        split's ground truth in COCO's format instead)."""
        return None

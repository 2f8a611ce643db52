"""COCO-format detection and instance segmentation, for users with their own COCO (or any dataset in its format).

Layout under ``root``: ``annotations/instances_<split>.json`` and the images of each split under ``<split>/`` (the
file names the annotation file gives), e.g. ``train2017`` and ``val2017``. The annotation files are read with
pycocotools (the COCO API: polygons and RLE masks alike). Categories become labels 1..K in the order of their ids
(0 is the detector's background); ``classes`` names them.

Validation is carved from the training split by ``val_size`` images (hyperparameters are chosen on it); the
``test_split`` (val2017) is the test split, as papers report it. Training pipeline as the released 1x configs: a
horizontal flip with probability 0.5 and normalisation with the backbone's mean and std; the detector resizes (shorter
side 800, longer at most 1333: ``model.min_size``, ``model.max_size``). Crowd annotations are left out of training
and kept as ``iscrowd`` regions for evaluation, as COCO's evaluation treats them.

Bad annotations stop the run with one line naming the file, image and annotation: a file that is not COCO instances,
a category id the file does not define, a box with zero area or outside its image (``invalid_boxes: skip`` drops
such boxes instead, for real datasets with a few degenerate ones).
"""

from __future__ import annotations

import contextlib
import io
import json
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.functional import normalize, to_tensor

from hornet.data.base import DetectionDataModule, bad_boxes, check_boxes, split_train_val

__all__ = ["COCODataModule", "COCOInstances", "invalid_boxes_of", "read_coco"]

COCO_KEYS = ("images", "annotations", "categories")


@cache
def read_coco(path: Path):
    """The pycocotools COCO object of an instances file (once per file), or a ValueError saying why it is not one."""
    from pycocotools.coco import COCO

    if not path.is_file():
        raise FileNotFoundError(f"data.root: no annotation file {path}")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a COCO annotation file: not JSON ({err})") from None
    missing = [key for key in COCO_KEYS if not isinstance(content, dict) or not isinstance(content.get(key), list)]
    if missing:
        raise ValueError(f"{path} is not a COCO instances file: no {', '.join(repr(k) for k in missing)} list")
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    known = {category["id"] for category in content["categories"]}
    for annotation in content["annotations"]:
        if annotation.get("category_id") not in known:
            raise ValueError(
                f"{path}: annotation {annotation.get('id')} of image {annotation.get('image_id')} has category_id "
                f"{annotation.get('category_id')}, which the file's categories {sorted(known)[:10]} do not define"
            )
    return coco


@cache
def invalid_boxes_of(path: Path) -> dict[int, str]:
    """Annotation id -> why its box is unusable (zero area, outside its image), for the instances file at ``path``:
    one vectorised pass over every box, once per file. An annotation of an image the file does not list is an error
    of the file itself (a ValueError)."""
    coco = read_coco(path)
    annotations = coco.dataset["annotations"]
    if not annotations:
        return {}
    for annotation in annotations:
        if annotation["image_id"] not in coco.imgs:
            raise ValueError(f"{path}: annotation {annotation['id']} refers to image {annotation['image_id']}, "
                             "which the file does not list")  # fmt: skip
    xywh = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float64, device="cpu").reshape(-1, 4)  # (N, 4)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)  # (N, 4) x1, y1, x2, y2
    images = [coco.imgs[a["image_id"]] for a in annotations]
    heights = torch.tensor([image["height"] for image in images], device="cpu")  # (N,) (also under a meta device)
    widths = torch.tensor([image["width"] for image in images], device="cpu")  # (N,)
    empty, outside = bad_boxes(boxes, heights, widths)
    invalid = {}
    for index in (empty | outside).nonzero().flatten().tolist():  # few: each gets check_boxes' own message
        annotation, image = annotations[index], images[index]
        where = f"{path}: annotation {annotation['id']} of image {annotation['image_id']}"
        try:
            check_boxes(boxes[index : index + 1], image["height"], image["width"], where=where)
        except ValueError as err:
            invalid[annotation["id"]] = str(err)
    return invalid


class COCOInstances(Dataset):
    """(image, target) pairs of a COCO split: ``boxes`` (x1, y1, x2, y2), ``labels`` 1..K, ``masks`` (when asked)
    and ``iscrowd`` (evaluation only; crowd annotations are dropped for training)."""

    def __init__(
        self, coco, image_ids: list[int], folder: Path, labels: dict[int, int], *, train: bool, masks: bool,
        mean: tuple[float, ...], std: tuple[float, ...], skip: frozenset[int] = frozenset(),
    ) -> None:  # fmt: skip
        self.coco, self.image_ids, self.folder, self.labels = coco, image_ids, folder, labels
        self.mean, self.std = mean, std  # the backbone's normalisation
        self.train, self.masks, self.skip = train, masks, skip  # skip: ids of annotations left out (invalid boxes)
        self.flip = v2.RandomHorizontalFlip(0.5)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        with Image.open(self.folder / info["file_name"]) as file:
            image = to_tensor(file.convert("RGB"))  # (3, H, W) in [0, 1]
        height, width = image.shape[-2:]
        annotations = [a for a in self.coco.imgToAnns.get(image_id, []) if not (self.train and a.get("iscrowd"))]
        annotations = [a for a in annotations if a["id"] not in self.skip]
        xywh = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)  # (N, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).clamp_min(0)  # (N, 4) x1, y1, x2, y2
        boxes[:, 0::2] = boxes[:, 0::2].clamp_max(width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp_max(height)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([self.labels[a["category_id"]] for a in annotations], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in annotations], dtype=torch.int64),
            "image_id": image_id,
        }
        if self.masks:
            masks = [torch.from_numpy(self.coco.annToMask(a)) for a in annotations]  # (H, W) uint8 each
            target["masks"] = tv_tensors.Mask(torch.stack(masks) if masks else torch.zeros(0, height, width))
        image = tv_tensors.Image(image)
        if self.train:
            image, target = self.flip(image, target)
        image = normalize(image.as_subclass(torch.Tensor), self.mean, self.std)
        target = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
        if self.masks:
            target["masks"] = target["masks"].to(torch.uint8)
        return image, target


class COCODataModule(DetectionDataModule):
    """COCO-format instances (see the module docstring).

    Args:
        root: the folder holding ``annotations/`` and the image folders.
        train_split, test_split: split names (``annotations/instances_<split>.json`` and ``<split>/``).
        val_size: training images held out for validation (by ``split_seed``).
        masks: read instance masks (Mask R-CNN); false reads boxes only (Faster R-CNN).
        invalid_boxes: ``error`` (stop at the first box with zero area or outside its image) or ``skip``.
        batch_size, eval_batch_size, num_workers: loaders (per device; 2 images per GPU as released).
        img_size: the side at which suites count MACs and time inference (the detector's resizing is the model's).
        predict_dir: a folder of images for ``hornet predict`` (default: the test split).
    """

    in_chans = 3

    def __init__(
        self,
        *,
        root: str,
        train_split: str = "train2017",
        test_split: str = "val2017",
        val_size: int = 5000,
        split_seed: int = 0,
        masks: bool = True,
        invalid_boxes: str = "error",
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        img_size: int = 800,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir,
            eval_batch_size=eval_batch_size,
        )  # fmt: skip
        if invalid_boxes not in ("error", "skip"):
            raise ValueError(f"data.invalid_boxes must be 'error' or 'skip'; got {invalid_boxes!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root {str(self.root)!r} is not a folder")
        self.splits = {"train": train_split, "test": test_split}
        self.val_size, self.split_seed, self.masks, self.invalid_boxes = val_size, split_seed, masks, invalid_boxes
        categories = sorted(read_coco(self._annotations("train")).dataset["categories"], key=lambda c: c["id"])
        self.labels = {category["id"]: k + 1 for k, category in enumerate(categories)}
        self.classes = tuple(category["name"] for category in categories)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def category_ids(self) -> dict[int, int]:
        return {label: category for category, label in self.labels.items()}

    def annotation_file(self) -> Path:
        return self._annotations("test")

    def _annotations(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{self.splits[split]}.json"

    def _dataset(self, split: str, image_ids: list[int], *, train: bool) -> COCOInstances:
        coco, invalid = read_coco(self._annotations(split)), invalid_boxes_of(self._annotations(split))
        if invalid and self.invalid_boxes == "error":
            raise ValueError(next(iter(invalid.values())))
        skip, folder = frozenset(invalid), self.root / self.splits[split]
        config = self.backbone_data_config()
        return COCOInstances(
            coco, image_ids, folder, self.labels, train=train, masks=self.masks, mean=config["mean"],
            std=config["std"], skip=skip,
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            ids = sorted(read_coco(self._annotations("train")).imgs)
            train, val = split_train_val(ids, self.val_size, self.split_seed)
            self.train_set = self._dataset("train", [ids[i] for i in train.indices], train=True)
            self.val_set = self._dataset("train", [ids[i] for i in val.indices], train=False)
        else:
            self.test_set = self._dataset("test", sorted(read_coco(self._annotations("test")).imgs), train=False)

    def eval_transform(self):
        """At the image's own size (the detector resizes keeping the aspect), normalised."""
        config = self.backbone_data_config()
        return lambda image: normalize(to_tensor(image.convert("RGB")), config["mean"], config["std"])

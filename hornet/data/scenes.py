"""Fashion-MNIST scenes: the offline segmentation dataset. Real images (Fashion-MNIST items) pasted on a canvas.

A scene is a ``size x size`` black canvas with ``items`` Fashion-MNIST images pasted on it, each rescaled to a random
side in ``item_sizes`` and placed at a random position, rejected and redrawn while it would cover more than
``max_overlap`` of an earlier item's foreground. A later item occludes an earlier one where its own pixels are not
background. The label of a pixel is that of the topmost item covering it:

- class + 1 where the item's intensity is at least ``FOREGROUND`` (the garment itself);
- 255 (ignored) on its faint rim, between ``EDGE`` and ``FOREGROUND`` (neither clearly garment nor background);
- 0 where no item reaches ``EDGE`` (background).

Each pasted item is also an instance (the detection scenes, hornet.data.detection_scenes): its instance mask is the
pixels labelled with it (its visible garment, what later items leave of it), its box the tight box of that mask.

Train scenes use items of the training split, val scenes a held-out part of it (``val_items``, by ``split_seed``),
test scenes the test split: no source image is in two splits. Scenes are generated from ``scene_seed``
deterministically and cached under ``cache_dir`` (default: $HORNET_DATA_DIR/scenes or ~/.cache/hornet/scenes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from torchvision.ops import masks_to_boxes

from hornet.data.base import IGNORE_INDEX, DetectionDataModule, ImageDataModule, SegmentationDataModule
from hornet.data.fashion_mnist import CLASSES, load_split, resolve_fashion_mnist_root
from hornet.files import write_atomic

__all__ = [
    "FashionMNISTDetectionScenes", "FashionMNISTScenes", "SceneDataModule", "SceneSpec", "generate_scenes",
    "held_out_items", "scene_instances",
]  # fmt: skip

FOREGROUND, EDGE = 0.25, 0.05  # item intensity (0-1) from which a pixel is garment, and from which it is not background
MEAN, STD = 0.146, 0.279  # of the scene pixels at the default settings, scaled to [0, 1] (measured)
MIN_INSTANCE_PIXELS = 16  # an item occluded down to fewer visible garment pixels is no instance (detection)
GENERATOR_VERSION = 2  # part of the cache key: bump when the generator's output changes (2: instance maps added)
SCENES: dict[str, dict[str, torch.Tensor]] = {}  # cache key -> generate_scenes' tensors: a suite's runs share them


def held_out_items(total: int, val_items: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training split's items for train scenes and for val scenes (disjoint), by ``split_seed``."""
    if not 0 < val_items < total:
        raise ValueError(f"data.val_items must be in [1, {total - 1}]; got {val_items}")
    order = np.random.default_rng(split_seed).permutation(total)
    return np.sort(order[val_items:]), np.sort(order[:val_items])


class SceneSpec:
    """How scenes are drawn (one value object, so the cache key and the generator read the same settings)."""

    def __init__(self, *, size: int, items: tuple[int, int], item_sizes: tuple[int, int], max_overlap: float) -> None:
        if not 1 <= items[0] <= items[1]:
            raise ValueError(f"data.items must be (min, max) with 1 <= min <= max; got {tuple(items)}")
        if not 8 <= item_sizes[0] <= item_sizes[1] <= size:
            raise ValueError(
                f"data.item_sizes must be (min, max) with 8 <= min <= max <= img_size {size}; got {item_sizes}"
            )
        if not 0 <= max_overlap <= 1:
            raise ValueError(f"data.max_overlap must be in [0, 1]; got {max_overlap}")
        self.size, self.items, self.item_sizes, self.max_overlap = size, tuple(items), tuple(item_sizes), max_overlap

    def key(self) -> dict:
        return {"size": self.size, "items": self.items, "item_sizes": self.item_sizes, "max_overlap": self.max_overlap}


def generate_scenes(
    images: torch.Tensor, labels: torch.Tensor, count: int, spec: SceneSpec, seed: int
) -> tuple[dict[str, torch.Tensor], list[list[tuple[int, int, int, int]]]]:
    """``count`` scenes from the items ``images`` (N, 28, 28) uint8 with classes ``labels`` (N,).

    Returns the tensors ``images`` (count, 1, size, size) uint8, ``labels`` (count, size, size) uint8 label maps,
    ``instances`` (count, size, size) uint8 (k + 1 on the pixels labelled with the k-th pasted item, else 0) and
    ``classes`` (count, max items) int64 (the k-th pasted item's class, -1 past the last); and per scene the pasted
    items as (item index, top, left, side), bottom to top."""
    rng = np.random.default_rng(seed)
    size = spec.size
    canvas = torch.zeros(count, 1, size, size, dtype=torch.uint8)
    label_maps = torch.zeros(count, size, size, dtype=torch.uint8)
    instance_maps = torch.zeros(count, size, size, dtype=torch.uint8)
    item_classes = torch.full((count, spec.items[1]), -1, dtype=torch.int64)
    placements = []
    for n in range(count):
        owner = torch.zeros(size, size, dtype=torch.bool)  # pixels some earlier item's garment covers
        pasted = []
        for _ in range(int(rng.integers(spec.items[0], spec.items[1] + 1))):
            for _attempt in range(20):
                item = int(rng.integers(len(images)))
                side = int(rng.integers(spec.item_sizes[0], spec.item_sizes[1] + 1))
                top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                resized = F.interpolate(
                    images[item][None, None].float(), size=(side, side), mode="bilinear", antialias=True,
                    align_corners=False,
                )[0, 0].round().clamp(0, 255)  # (side, side) in 0-255  # fmt: skip
                intensity = resized / 255
                garment = intensity >= FOREGROUND
                window = owner[top : top + side, left : left + side]
                covered = (window & (intensity >= EDGE)).sum()
                if not pasted or covered <= spec.max_overlap * window.sum().clamp_min(1):
                    break
            visible = intensity >= EDGE  # the item's pixels that occlude what is below
            region = (slice(top, top + side), slice(left, left + side))
            canvas[n, 0][region][visible] = resized[visible].to(torch.uint8)
            label = torch.where(garment, int(labels[item]) + 1, IGNORE_INDEX).to(torch.uint8)
            label_maps[n][region][visible] = label[visible]
            instance_maps[n][region][visible] = (garment * (len(pasted) + 1)).to(torch.uint8)[visible]
            item_classes[n, len(pasted)] = int(labels[item])
            owner[region] |= garment
            pasted.append((item, top, left, side))
        placements.append(pasted)
    tensors = {"images": canvas, "labels": label_maps, "instances": instance_maps, "classes": item_classes}
    return tensors, placements


class SceneDataModule(ImageDataModule):
    """Fashion-MNIST scenes, 1 channel: what the segmentation and the detection scenes share (their settings, the
    cache, the splits). Subclasses say what a sample is (``_dataset``).

    Args:
        root: folder with Fashion-MNIST's IDX files (None: $HORNET_DATA_DIR, then Debian's dataset-fashion-mnist).
        batch_size, eval_batch_size, num_workers: loaders (per device).
        img_size: the canvas side (64 by default).
        train_scenes, val_scenes, test_scenes: scenes per split.
        items: [min, max] items per scene; item_sizes: [min, max] side of a pasted item in px.
        max_overlap: the largest share of an earlier item's visible pixels a new item may cover.
        val_items: training-split items held out for the val scenes (by ``split_seed``).
        scene_seed: seed of the scenes (independent of the run seed: every run of a suite sees the same scenes).
        cache_dir: where generated scenes are kept (see the module docstring).
        predict_dir: a folder of images for ``hornet predict`` (default: the test scenes).
    """

    in_chans = 1

    def __init__(
        self,
        *,
        root: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = 128,
        num_workers: int = 0,
        img_size: int = 64,
        train_scenes: int = 4000,
        val_scenes: int = 500,
        test_scenes: int = 1000,
        items: tuple[int, int] = (2, 4),
        item_sizes: tuple[int, int] = (20, 40),
        max_overlap: float = 0.3,
        val_items: int = 5000,
        split_seed: int = 0,
        scene_seed: int = 0,
        cache_dir: str | None = None,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, img_size=img_size, predict_dir=predict_dir,
            eval_batch_size=eval_batch_size,
        )  # fmt: skip
        for key, value in (("train_scenes", train_scenes), ("val_scenes", val_scenes), ("test_scenes", test_scenes)):
            if value < 1:
                raise ValueError(f"data.{key} must be a positive integer; got {value}")
        self.spec = SceneSpec(size=img_size, items=tuple(items), item_sizes=tuple(item_sizes), max_overlap=max_overlap)
        self.counts = {"train": train_scenes, "val": val_scenes, "test": test_scenes}
        self.root, self.val_items, self.split_seed, self.scene_seed = root, val_items, split_seed, scene_seed
        self.cache_dir = cache_dir

    def _cache_root(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        if os.environ.get("HORNET_DATA_DIR"):
            return Path(os.environ["HORNET_DATA_DIR"]).expanduser() / "scenes"
        return Path("~/.cache/hornet/scenes").expanduser()

    def scenes(self, split: str) -> dict[str, torch.Tensor]:
        """generate_scenes' tensors of ``split`` (``images`` (N, 1, S, S), ``labels``, ``instances`` (N, S, S),
        ``classes``): from memory, the cache, or generated."""
        source = resolve_fashion_mnist_root(self.root)
        settings = {
            "version": GENERATOR_VERSION, "split": split, "count": self.counts[split], "seed": self.scene_seed,
            "val_items": self.val_items, "split_seed": self.split_seed, **self.spec.key(),
            "source": [p.stat().st_size for p in sorted(source.iterdir()) if "ubyte" in p.name],
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        if key in SCENES:
            return SCENES[key]
        path = self._cache_root() / f"{split}-{key}.pt"
        if path.is_file():
            SCENES[key] = torch.load(path, weights_only=True)
            return SCENES[key]
        items, classes = load_split(source, "test" if split == "test" else "train")
        if split != "test":
            train_ids, val_ids = held_out_items(len(items), self.val_items, self.split_seed)
            ids = torch.from_numpy(train_ids if split == "train" else val_ids)
            items, classes = items[ids], classes[ids]
        seed = self.scene_seed * 1000 + ("train", "val", "test").index(split)  # a stream of its own per split
        tensors, _ = generate_scenes(items, classes, self.counts[split], self.spec, seed)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda handle: torch.save(tensors, handle), binary=True)
        except OSError:
            pass  # a read-only cache only costs the generation next time
        SCENES[key] = tensors
        return tensors

    def prepare_data(self) -> None:
        for split in self.counts:
            self.scenes(split)

    def _dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set, self.val_set = self._dataset("train"), self._dataset("val")
        elif stage == "validate":
            self.val_set = self._dataset("val")
        else:
            self.test_set = self._dataset("test")

    def eval_transform(self):
        base = super().eval_transform()
        return lambda image: (base(image) - MEAN) / STD


def normalised_images(scenes: dict[str, torch.Tensor]) -> torch.Tensor:
    """The scenes' uint8 images as the model's input: (N, 1, S, S) float, normalised by the scenes' mean and std."""
    return (scenes["images"].float() / 255 - MEAN) / STD


class FashionMNISTScenes(SceneDataModule, SegmentationDataModule):
    """Segmentation of Fashion-MNIST scenes: 11 classes (background + the 10 garments), 1 channel. Settings as
    SceneDataModule."""

    num_classes = 11
    classes = ("background", *CLASSES)

    def _dataset(self, split: str) -> Dataset:
        scenes = self.scenes(split)
        return TensorDataset(normalised_images(scenes), scenes["labels"].long())


def scene_instances(instances: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
    """A scene's detection target from its instance map (S, S) and pasted items' classes (max items,): one instance
    per item with at least MIN_INSTANCE_PIXELS visible garment pixels; its box the mask's tight box in pixel edges
    (a one-pixel mask is a 1 x 1 box), its label the item's class + 1."""
    ids = torch.arange(1, len(classes) + 1, dtype=instances.dtype)  # instance ids of the items: (max items,)
    masks = instances[None] == ids[:, None, None]  # (max items, S, S)
    keep = (classes >= 0) & (masks.sum(dim=(1, 2)) >= MIN_INSTANCE_PIXELS)
    masks = masks[keep]
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # pixel indices -> edges: (N, 4)
    return {"boxes": boxes, "labels": classes[keep] + 1, "masks": masks.to(torch.uint8)}


class SceneInstances(Dataset):
    """(image, detection target) pairs of normalised scene images (N, 1, S, S) and their instance maps."""

    def __init__(self, images: torch.Tensor, instances: torch.Tensor, classes: torch.Tensor) -> None:
        self.images, self.instances, self.classes = images, instances, classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[index], scene_instances(self.instances[index], self.classes[index])


class FashionMNISTDetectionScenes(SceneDataModule, DetectionDataModule):
    """Detection and instance segmentation of Fashion-MNIST scenes: 10 classes (the garments), one instance per
    pasted item (see the module docstring), 1 channel. Settings as SceneDataModule; the same scenes as
    FashionMNISTScenes for the same settings."""

    num_classes = 10
    classes = CLASSES

    def _dataset(self, split: str) -> Dataset:
        scenes = self.scenes(split)
        return SceneInstances(normalised_images(scenes), scenes["instances"], scenes["classes"])

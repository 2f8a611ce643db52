"""Lightning callbacks of every `hornet` run: speed, best validation scores, predictions, saving on the way out.

What a run measures about itself is measured here, outside the LightningModule, so the training step stays the
model's alone and the suite runner reads every number from one place.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from hornet.analysis.draw.detections import detection_sheet, draw_detections
from hornet.analysis.draw.masks import mask_image, mask_sheet
from hornet.data.coco_format import coco_ground_truth, coco_results
from hornet.errors import interrupted_by, raise_if_interrupted
from hornet.files import write_atomic

__all__ = [
    "BestValidation", "DetectionWriter", "MaskWriter", "PredictionWriter", "SaveOnException", "StopOnSignal",
    "TrainThroughput",
]  # fmt: skip

SHEET_IMAGES = 8  # images on the side-by-side sheet MaskWriter draws


def _batch_images(batch) -> int:
    """Images in a batch: an (images, targets) pair of tensors, or a list of images."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return len(first)


class TrainThroughput(Callback):
    """Training images per second of every batch (data loading excluded), logged as ``train/img_s``.

    ``median_img_s`` is what a suite records: the median past the first ``warmup`` batches of this invocation.
    ``wall_img_s`` is the whole loop's pace past those batches, data loading and Lightning's own work included:
    what `hornet bench --mode fit` compares with a plain PyTorch loop.
    """

    def __init__(self, warmup: int = 2) -> None:
        self.warmup = warmup
        self.img_s: list[float] = []
        self._start = 0.0
        self._wall: list[float] = []  # perf_counter at the end of the warm-up, then of the last batch
        self._wall_images = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        images = _batch_images(batch)
        if now > self._start:
            self.img_s.append(images / (now - self._start))
            pl_module.log("train/img_s", self.img_s[-1], on_step=True, on_epoch=False)
        if len(self.img_s) == self.warmup:
            self._wall, self._wall_images = [now], 0
        elif self._wall:
            self._wall[1:] = [now]
            self._wall_images += images

    @property
    def median_img_s(self) -> float | None:
        speeds = self.img_s[self.warmup :] or self.img_s
        return statistics.median(speeds) if speeds else None

    @property
    def wall_img_s(self) -> float | None:
        return self._wall_images / (self._wall[1] - self._wall[0]) if len(self._wall) == 2 else None


class BestValidation(Callback):
    """The best value (max) over the epochs of each of the module's ``selection_metrics`` (e.g. ``val/top1`` and
    ``val/top1_ema``), kept in the checkpoint so a resumed fit remembers the epochs before it."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for name in getattr(pl_module, "selection_metrics", ()):
            value = trainer.callback_metrics.get(name)
            if value is not None:
                self.best[name] = max(float(value), self.best.get(name, float("-inf")))

    def state_dict(self) -> dict:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = dict(state_dict.get("best", {}))


def _predict_names(trainer: Trainer) -> list[str] | None:
    """The file of each image being predicted when predicting a folder; None for a split (rows are indices)."""
    loaders = trainer.predict_dataloaders
    dataset = (loaders[0] if isinstance(loaders, list) else loaders).dataset
    datamodule = trainer.datamodule
    return datamodule.predict_names(dataset) if datamodule is not None else None


class MaskWriter(BasePredictionWriter):
    """``hornet predict`` for segmentation: one palette PNG per image in ``directory`` (pixel values are class ids,
    the palette colours them; named after the image file when predicting a folder, else by test-split index), and
    ``sheet.png``: the first images next to their labels (when the data has them) and predictions."""

    def __init__(self, directory: Path, num_classes: int) -> None:
        super().__init__(write_interval="batch")
        self.directory = directory
        self.num_classes = num_classes
        self.written = 0
        self.sheet: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, str]] = []
        self.names: list[str] | None = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.written, self.sheet = 0, []
        self.names = _predict_names(trainer)  # once: a folder's file list, indexed by the batches' indices
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        names = self.names
        masks, images, labels = prediction["masks"], prediction["images"], prediction.get("labels")
        for row, index in enumerate(batch_indices):
            name = Path(names[index]).stem if names else f"{index:06d}"
            mask_image(masks[row], self.num_classes).save(self.directory / f"{name}.png")
            if len(self.sheet) < SHEET_IMAGES:
                label = labels[row] if labels is not None else None
                self.sheet.append((images[row], label, masks[row], name))
        self.written += len(masks)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.sheet or not trainer.is_global_zero:
            return
        images, labels, masks, names = zip(*self.sheet)
        has_labels = all(label is not None for label in labels)
        mask_sheet(
            torch.stack(images), torch.stack(masks), self.num_classes, self.directory / "sheet.png",
            labels=torch.stack(labels) if has_labels else None, names=names,
        )  # fmt: skip
        print(f"hornet predict: {self.written} masks written to {self.directory}", file=sys.stderr)


class DetectionWriter(BasePredictionWriter):
    """``hornet predict`` for detection: per image a PNG with the detections at or above ``score_threshold`` drawn
    (boxes, class names, scores, masks; named after the image file when predicting a folder, else by test-split
    index); ``detections.json``, every detection in COCO's results format (``image_id``, ``category_id``, ``bbox`` as
    x, y, width, height, ``score``, RLE ``segmentation`` for Mask R-CNN), which pycocotools' COCOeval reads; for data
    without an annotation file of its own (the scenes), ``ground_truth.json``, the split's ground truth as a COCO
    instances file; and ``sheet.png``: the first images' ground truth next to their predictions."""

    def __init__(self, directory: Path, classes: tuple[str, ...] = (), *, score_threshold: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.directory, self.classes, self.score_threshold = directory, tuple(classes), score_threshold
        self.records: list[dict] = []
        self.truth: list[tuple[int, int, int, dict]] = []  # (image_id, height, width, target) without a file of its own
        self.sheet: list[tuple[torch.Tensor, dict, dict | None, str]] = []
        self.names: list[str] | None = None
        self.category_ids: dict[int, int] = {}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.records, self.truth, self.sheet = [], [], []
        self.names = _predict_names(trainer)
        data = trainer.datamodule
        if not self.classes:  # the data's class names, known once the datamodule is attached
            self.classes = tuple(getattr(data, "classes", ()) or ())
        self.category_ids = data.category_ids() if hasattr(data, "category_ids") else {}
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        from torchvision.io import write_png

        targets = prediction.get("targets")
        for row, index in enumerate(batch_indices):
            name = Path(self.names[index]).stem if self.names else f"{index:06d}"
            image, detection = prediction["images"][row], prediction["detections"][row]
            drawn = draw_detections(image, detection, self.classes, score_threshold=self.score_threshold)
            write_png(drawn, str(self.directory / f"{name}.png"))
            target = targets[row] if targets else None
            image_id = int(target.get("image_id", index)) if target is not None else index
            categories = self.category_ids or {label: label for label in detection["labels"].tolist()}
            self.records += coco_results(image_id, detection, categories)
            if target is not None:
                self.truth.append((image_id, image.shape[-2], image.shape[-1], target))
            if len(self.sheet) < SHEET_IMAGES:
                self.sheet.append((image, detection, target, name))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        write_atomic(self.directory / "detections.json", lambda handle: json.dump(self.records, handle))
        annotations = trainer.datamodule.annotation_file() if hasattr(trainer.datamodule, "annotation_file") else None
        if annotations is None and self.truth and self.category_ids:
            truth = coco_ground_truth(self.truth, self.classes, self.category_ids)
            annotations = self.directory / "ground_truth.json"
            write_atomic(annotations, lambda handle: json.dump(truth, handle))
        if self.sheet:
            images, detections, targets, names = zip(*self.sheet)
            detection_sheet(
                images, detections, self.directory / "sheet.png", classes=self.classes, names=names,
                targets=targets if all(t is not None for t in targets) else None, score_threshold=self.score_threshold,
            )  # fmt: skip
        images = len({record["image_id"] for record in self.records})
        against = f"; COCO results format, ground truth {annotations}" if annotations and self.truth else ""
        print(f"hornet predict: {len(self.records)} detections in {images} images written to {self.directory}"
              f"{against}", file=sys.stderr)  # fmt: skip


class SaveOnException(Callback):
    """Save the training state when fit stops on an exception or a signal, for ``--ckpt_path last`` to resume.

    Unlike Lightning's OnExceptionCheckpoint, its presence does not make a fit without ``ckpt_path`` resume. A fit
    stopped by a non-finite loss is not saved (its weights are what went wrong), and a failing save (a full disk)
    is reported without hiding the exception that stopped the fit. A signalled single fit says how to resume it.
    """

    def __init__(self, path: Path, *, resume_hint: str | None = None) -> None:
        self.path = path
        self.resume_hint = resume_hint

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0 or isinstance(exception, FloatingPointError):
            return
        try:
            trainer.save_checkpoint(self.path)
        except OSError as err:
            print(f"hornet fit: could not save {self.path}: {err}", file=sys.stderr)
            return
        if interrupted_by(exception) and self.resume_hint and trainer.is_global_zero:
            print(f"hornet fit: interrupted; resume with {self.resume_hint}", file=sys.stderr)


class StopOnSignal(Callback):
    """Stop at the end of the batch when a SIGTERM / SIGINT arrived but its exception was lost where it landed
    (``hornet.errors.interrupt_on_signals``), so a signalled fit always stops, saves and exits 143 / 130."""

    def on_train_batch_end(self, *args) -> None:
        raise_if_interrupted()

    on_validation_batch_end = on_test_batch_end = on_predict_batch_end = on_train_batch_end


class PredictionWriter(BasePredictionWriter):
    """``hornet predict``: the top-k classes and probabilities of every image into a CSV (one row per image, named
    by its file when predicting a folder, else by its index in the test split)."""

    def __init__(self, path: Path) -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions, batch_indices) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        datamodule = trainer.datamodule
        classes = getattr(datamodule, "classes", None)
        names = _predict_names(trainer)
        indices = torch.cat([batch["indices"] for batch in predictions]).tolist()
        probs = torch.cat([batch["probs"] for batch in predictions]).tolist()

        def write(handle) -> None:
            writer = csv.writer(handle)
            k = len(indices[0])
            writer.writerow(
                ["file" if names else "index", *(f"{c}{i}" for i in range(1, k + 1) for c in ("class", "prob"))]
            )
            for row, (top, p) in enumerate(zip(indices, probs)):
                labels = [classes[i] if classes else i for i in top]
                pairs = [value for pair in zip(labels, (round(x, 5) for x in p)) for value in pair]
                writer.writerow([names[row] if names else row, *pairs])

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, write)
        print(f"hornet predict: {len(indices)} predictions written to {self.path}", file=sys.stderr)

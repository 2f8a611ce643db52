"""Object detection and instance segmentation as a LightningModule: torchvision's Faster R-CNN / Mask R-CNN over a
timm backbone with an FPN or HorFPN neck (hornet.models.detector), the released 1x recipe (AdamW 1e-4, weight decay
0.05, step decay at epochs 8 and 11 of 12, linear warm-up) as hyperparameters.

Metrics are COCO's, through torchmetrics' MeanAveragePrecision with pycocotools as its backend: mAP over IoU
0.50:0.95, AP50 and AP75, for boxes (``bbox``) and masks (``segm``), over the whole split (every rank's images).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from hornet.analysis.draw.detections import class_name
from hornet.callbacks import DetectionWriter
from hornet.data.base import check_boxes
from hornet.lit.recipe import DETECTION_RECIPE, Recipe
from hornet.lit.task import Task
from hornet.models.detector import RELEASED_DETECTOR, DetectorCost, DetectorSpec, create_detector
from hornet.models.segmentor import load_backbone_weights

__all__ = ["COCO_SUMMARY", "DetectionModule", "coco_scores"]

# torchmetrics' names -> ours; a size no object of the split has (COCO's -1) is left out
COCO_SUMMARY = {"map": "mAP", "map_50": "AP50", "map_75": "AP75", "map_small": "APs", "map_medium": "APm",
                "map_large": "APl"}  # fmt: skip
MASK_THRESHOLD = 0.5  # a predicted mask's probability from which a pixel belongs to the instance (as torchvision)


def coco_scores(metric: MeanAveragePrecision, classes: tuple[str, ...] = ()) -> dict[str, float]:
    """``bbox_mAP``, ``bbox_AP50``, ... (and ``segm_*``) of a computed MeanAveragePrecision; per class as
    ``bbox_AP/<class>`` when it was built with ``class_metrics``."""
    result = metric.compute()
    scores = {}
    for iou_type in metric.iou_type:
        prefix = f"{iou_type}_" if len(metric.iou_type) > 1 else ""
        for key, name in COCO_SUMMARY.items():
            value = float(result[prefix + key])
            if value != -1 or key == "map":  # -1: no object of that size (COCO's convention); mAP is always kept
                scores[f"{iou_type}_{name}"] = value
        per_class = result.get(prefix + "map_per_class")
        if metric.class_metrics and per_class is not None:
            labels = result["classes"].reshape(-1).tolist()  # one list for every iou type; 0-d for a single class
            for label, value in zip(labels, per_class.reshape(-1).tolist()):
                scores[f"{iou_type}_AP/{class_name(label, classes).replace('/', '-')}"] = float(value)
    return scores


class DetectionModule(Task):
    """Train and evaluate a two-stage detector.

    Args:
        backbone: a timm model name whose ``features_only`` form gives four levels (HorNet, ConvNeXt, Swin, ResNet).
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``pretrained``, ``stem_stride``).
        backbone_checkpoint: initialise the backbone from a `hornet fit` classification checkpoint, a released HorNet
            checkpoint or a timm state dict (the classifier is left out).
        detector: the detector beside its backbone (hornet.models.detector.DetectorSpec: Mask / Faster R-CNN, the FPN
            or HorFPN neck and its width, anchors, image sizes, head sizes; released values as defaults).
        num_classes, in_chans, img_size: set from the data (linked by the CLI); num_classes counts object classes.
        recipe: the optimisation recipe (hornet.lit.recipe.Recipe; default ``DETECTION_RECIPE``: AdamW 1e-4, step
            decay x 0.1 after epochs 8 and 11 of 12, as the 1x schedule); the neck and heads train at the base lr.
        score_threshold: the score from which `hornet predict` draws a detection.
    """

    monitor = "val/bbox_mAP"
    selection_metrics = ("val/bbox_mAP", "val/segm_mAP")
    network_parts: ClassVar[dict[str, str]] = {"neck": "detector.backbone.neck"}

    def __init__(
        self,
        *,
        backbone: str = "hornet_micro_gf",
        backbone_kwargs: dict | None = None,
        backbone_checkpoint: str | None = None,
        detector: DetectorSpec = RELEASED_DETECTOR,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 800,
        recipe: Recipe = DETECTION_RECIPE,
        score_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0 <= score_threshold <= 1:
            raise ValueError(f"model.score_threshold must be in [0, 1]; got {score_threshold}")
        if not isinstance(detector, DetectorSpec):
            detector = DetectorSpec(**detector)
        self.save_recipe(recipe, ignore=("detector",))
        self.hparams["detector"] = asdict(detector)
        self.masks = detector.masks
        self.detector = create_detector(
            backbone, detector, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
            backbone_kwargs={"drop_path_rate": self.recipe.drop_path_rate, **(backbone_kwargs or {})},
        )  # fmt: skip
        if backbone_checkpoint is not None:
            load_backbone_weights(self.backbone, backbone_checkpoint)
        iou_types = ("bbox", "segm") if self.masks else ("bbox",)
        with torch.device("cpu"):  # the metric reads its thresholds back at init: not on the meta device (suites)
            self.metrics = nn.ModuleDict(
                {
                    split: MeanAveragePrecision(
                        iou_type=iou_types, backend="pycocotools", class_metrics=split == "test"
                    )
                    for split in ("val", "test")
                }
            )
        self._group_settings()  # while the backbone is still unwrapped

    # --- what the CLI and suites ask ------------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The feature backbone (timm's features_only getter; the classification model under ``.model``)."""
        return self.detector.backbone.body

    def network(self) -> nn.Module:
        return DetectorCost(self.detector)

    def decoder_modules(self) -> dict[str, nn.Module]:
        return {"neck": self.detector.backbone.neck, "rpn": self.detector.rpn, "roi_heads": self.detector.roi_heads}

    def prediction_writer(self, run_dir: Path) -> DetectionWriter:
        return DetectionWriter(run_dir / "predictions", score_threshold=self.hparams.score_threshold)  # classes: data's

    # --- forward ---------------------------------------------------------------------------------------------------
    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Images (C, H, W) -> per image ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,) and ``masks`` (N, H, W)
        bool (Mask R-CNN), at the images' own size."""
        detections = self.detector(list(images))
        for detection in detections:
            if "masks" in detection:
                detection["masks"] = detection["masks"][:, 0] >= MASK_THRESHOLD  # (N, 1, H, W) -> (N, H, W)
        return detections

    def _check_targets(self, images: list[torch.Tensor], targets: list[dict]) -> None:
        classes = self.hparams.num_classes
        for image, target in zip(images, targets):
            labels = target["labels"]
            if ((labels < 1) | (labels > classes)).any():
                bad = sorted(set(labels[(labels < 1) | (labels > classes)].tolist()))[:8]
                raise ValueError(f"target labels {bad} are outside 1..{classes} (0 is the detector's background)")
            where = f"image {target.get('image_id', '?')}"
            check_boxes(target["boxes"], image.shape[-2], image.shape[-1], where=where)

    # --- training --------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch  # lists: (C, H, W) images, target dicts
        self._check_targets(images, targets)
        if not self.masks:
            targets = [{k: v for k, v in target.items() if k != "masks"} for target in targets]
        losses = self.detector(list(images), targets)  # loss_objectness, loss_rpn_box_reg, loss_classifier, ...
        loss = sum(losses.values())
        self.check_finite(loss)
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(images))
        return loss

    # --- evaluation ------------------------------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        images, targets = batch
        detections = self(images)
        truth = []
        for target in targets:
            kept = {"boxes": target["boxes"], "labels": target["labels"]}
            if "iscrowd" in target:
                kept["iscrowd"] = target["iscrowd"]
            if self.masks:
                kept["masks"] = target["masks"].bool()
            truth.append(kept)
        self.metrics[split].update(detections, truth)

    def _log_scores(self, split: str) -> None:
        classes = getattr(self.trainer.datamodule, "classes", ()) if self.trainer.datamodule else ()
        for name, value in coco_scores(self.metrics[split], tuple(classes)).items():
            self.log(f"{split}/{name}", value, prog_bar=name == "bbox_mAP", sync_dist=False)
        self.metrics[split].reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        """COCO's summary as ``test/bbox_mAP``, ... and per class as ``test/bbox_AP/<class>``."""
        self._log_scores("test")

    def predict_step(self, batch, batch_idx: int) -> dict:
        """Detections, with the images (and targets, when the split has them) for the writer."""
        images, second = batch
        out = {"images": list(images), "detections": [{k: v.cpu() for k, v in d.items()} for d in self(images)]}
        if second and isinstance(second[0], dict):
            out["targets"] = second
        return out

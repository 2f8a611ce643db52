"""Semantic segmentation as a LightningModule: a timm backbone's feature pyramid, UPerNet / HorFPN / semantic-FPN
decoders, the released ADE20K recipe (AdamW, poly decay with warm-up, auxiliary FCN head at 0.4) as hyperparameters.

Metrics follow mmseg: mIoU from per-class intersections and unions summed over the whole split, pixels labelled 255
ignored, classes absent from both prediction and label left out (torchmetrics' MulticlassJaccardIndex with
``ignore_index``; its MeanIoU averages per image instead); aAcc = correct pixels / labelled pixels; mAcc the mean of
the per-class accuracies.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from hornet.callbacks import MaskWriter
from hornet.data.base import IGNORE_INDEX
from hornet.lit.recipe import SEGMENTATION_RECIPE, Recipe
from hornet.lit.task import Task
from hornet.models.segmentor import create_segmentor, load_backbone_weights, slide_inference

__all__ = ["SegmentationModule", "segmentation_metrics"]


def segmentation_metrics(num_classes: int) -> dict[str, nn.Module]:
    """mmseg's metrics over a whole split (torchmetrics, ignoring label 255): ``mIoU`` (classes absent from both
    prediction and label left out), ``aAcc`` (pixel accuracy), ``mAcc`` (mean per-class accuracy), and ``IoU`` per
    class (NaN for an absent class). Updated with (B, H, W) predicted and true class maps."""
    common = dict(num_classes=num_classes, ignore_index=IGNORE_INDEX, validate_args=False)
    return {
        "mIoU": MulticlassJaccardIndex(average="macro", **common),
        "aAcc": MulticlassAccuracy(average="micro", **common),
        "mAcc": MulticlassAccuracy(average="macro", **common),
        "IoU": MulticlassJaccardIndex(average="none", zero_division=float("nan"), **common),
    }


class SegmentationModule(Task):
    """Train and evaluate a semantic segmentor.

    Args:
        backbone: a timm model name whose ``features_only`` form gives four levels (HorNet, ConvNeXt, Swin, ResNet).
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``pretrained``, ``mixers``).
        backbone_checkpoint: initialise the backbone from a `hornet fit` classification checkpoint, a released HorNet
            checkpoint or a timm state dict (the classifier is left out).
        decoder: ``upernet``, ``horfpn_7x7``, ``horfpn_gf`` or ``semantic_fpn`` (hornet.models.segmentor.DECODERS).
        channels: the decoder's width C (512 as released).
        gnconv_order, gnconv_mixer, gnconv_scale: HorFPN's gnConv (order 2, the decoder's mixer, s = 1 as released).
        aux_channels: width of the auxiliary FCN head on the third level (256 as released); null leaves it out.
        aux_weight: weight of its loss (0.4 as released).
        num_classes, in_chans, img_size: set from the data (linked by the CLI).
        recipe: the optimisation recipe (hornet.lit.recipe.Recipe; default ``SEGMENTATION_RECIPE``: AdamW 1e-4, poly
            decay after warm-up, as released); the decoder trains at the base lr.
        inference: ``whole`` (the image at once) or ``slide`` (``slide_crop`` windows every ``slide_stride`` px,
            logits averaged where they overlap) for validation, test and prediction.
    """

    monitor = "val/mIoU"
    selection_metrics = ("val/mIoU", "val/aAcc")
    network_parts: ClassVar[dict[str, str]] = {"decoder": "decode_head"}

    def __init__(
        self,
        *,
        backbone: str = "hornet_micro_gf",
        backbone_kwargs: dict | None = None,
        backbone_checkpoint: str | None = None,
        decoder: str = "upernet",
        channels: int = 512,
        gnconv_order: int = 2,
        gnconv_mixer: str | None = None,
        gnconv_scale: float = 1.0,
        aux_channels: int | None = 256,
        aux_weight: float = 0.4,
        num_classes: int = 11,
        in_chans: int = 3,
        img_size: int = 512,
        recipe: Recipe = SEGMENTATION_RECIPE,
        inference: Literal["whole", "slide"] = "whole",
        slide_crop: int | None = None,
        slide_stride: int | None = None,
    ) -> None:
        super().__init__()
        if inference not in ("whole", "slide"):
            raise ValueError(f"model.inference must be 'whole' or 'slide'; got {inference!r}")
        if aux_weight < 0:
            raise ValueError(f"model.aux_weight must be >= 0; got {aux_weight}")
        if num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2; got {num_classes}")
        self.save_recipe(recipe)
        self.segmentor = create_segmentor(
            backbone, num_classes=num_classes, in_chans=in_chans, img_size=img_size, decoder=decoder,
            channels=channels, gnconv_order=gnconv_order, gnconv_mixer=gnconv_mixer, gnconv_scale=gnconv_scale,
            aux_channels=aux_channels if aux_weight > 0 else None,
            backbone_kwargs={"drop_path_rate": self.recipe.drop_path_rate, **(backbone_kwargs or {})},
        )  # fmt: skip
        if backbone_checkpoint is not None:
            load_backbone_weights(self.backbone, backbone_checkpoint)
        self.slide = (slide_crop or img_size, slide_stride or (slide_crop or img_size) * 2 // 3)
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}": metric
                for split in ("val", "test")
                for name, metric in segmentation_metrics(num_classes).items()
                if split == "test" or name != "IoU"  # per-class IoU at test
            }
        )
        self._group_settings()  # while the backbone is still unwrapped
        self.example_input_array = torch.zeros(1, in_chans, img_size, img_size)

    # --- what the CLI and suites ask ------------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The feature backbone (timm's features_only getter; the classification model under ``.model``)."""
        return self.segmentor.backbone

    def network(self) -> nn.Module:
        return self.segmentor

    def decoder_modules(self) -> dict[str, nn.Module]:
        heads = {"decode_head": self.segmentor.decode_head}
        if self.segmentor.aux_head is not None:
            heads["aux_head"] = self.segmentor.aux_head
        return heads

    def prediction_writer(self, run_dir: Path) -> MaskWriter:
        return MaskWriter(run_dir / "predictions", self.hparams.num_classes)

    # --- forward ---------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_classes, H, W) logits, whole or by sliding windows."""
        if self.hparams.inference == "slide":
            crop, stride = self.slide
            return slide_inference(self.segmentor, x, crop=crop, stride=stride, num_classes=self.hparams.num_classes)
        return self.segmentor(x)

    def _check_labels(self, labels: torch.Tensor) -> None:
        bad = (labels >= self.hparams.num_classes) & (labels != IGNORE_INDEX) | (labels < 0)
        if bad.any():
            values = sorted(set(labels[bad].unique().tolist()))[:8]
            raise ValueError(
                f"label values {values} are outside [0, {self.hparams.num_classes}) and not the ignore index "
                f"{IGNORE_INDEX}; check the dataset's label maps (ADE20K: data.reduce_zero_label)"
            )

    # --- training --------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, labels = batch  # (B, C, H, W), (B, H, W)
        self._check_labels(labels)
        logits, aux = self.segmentor.forward_train(x)
        loss = self._loss(logits, labels)
        if aux is not None:
            aux_loss = self._loss(aux, labels)
            self.log("train/aux_loss", aux_loss, on_step=True, on_epoch=False)
            loss = loss + self.hparams.aux_weight * aux_loss
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    @staticmethod
    def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy at the labels' resolution (logits upsampled bilinearly), pixels labelled 255 ignored."""
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)

    # --- evaluation ------------------------------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        x, labels = batch
        self._check_labels(labels)
        logits = self(x)
        self.log(f"{split}/loss", self._loss(logits, labels), prog_bar=split == "val", sync_dist=True)
        predictions = logits.argmax(dim=1)  # (B, H, W)
        for name in ("mIoU", "aAcc", "mAcc"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(predictions, labels)
            self.log(f"{split}/{name}", metric, prog_bar=name == "mIoU", on_epoch=True)
        if split == "test":
            self.metrics["test_IoU"].update(predictions, labels)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Per-class IoU as ``test/IoU/<class>`` (in the run's metrics; a suite's results.csv keeps the means)."""
        metric = self.metrics["test_IoU"]
        iou = metric.compute()  # (K,) over the whole split, every rank's pixels
        names = getattr(self.trainer.datamodule, "classes", None)
        for k in range(self.hparams.num_classes):
            name = names[k] if names and k < len(names) else str(k)
            self.log(f"test/IoU/{name.replace('/', '-')}", iou[k].float())
        metric.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Class masks, with the images (and labels, when the split has them) for the writer's sheet."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        out = {"masks": self(x).argmax(dim=1).to(torch.uint8), "images": x}
        if isinstance(batch, (list, tuple)) and batch[1].ndim == 3:  # (B, H, W) label maps, not indices
            out["labels"] = batch[1]
        return out

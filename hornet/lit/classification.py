"""Image classification as a LightningModule: any timm backbone, the released HorNet recipe as plain hyperparameters."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from hornet.callbacks import PredictionWriter
from hornet.lit.recipe import CLASSIFICATION_RECIPE, Recipe
from hornet.lit.task import Task
from hornet.models import check_model_name, compile_model, input_size_kwargs

__all__ = ["ClassificationModule"]


class ClassificationModule(Task):
    """Train and evaluate an image classifier.

    ``monitor`` names the validation metric that picks the best checkpoint; ``selection_metrics`` the ones whose best
    value over the epochs a suite records (``best_val_top1``, ``best_val_top1_ema``).

    Args:
        backbone: a timm model name (``hornet_tiny_gf``, ``convnext_tiny``, ...) or a module.
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``orders``, ``mixers``).
        num_classes, in_chans, img_size: set from the data (linked by the CLI), never written twice.
        recipe: the optimisation recipe (hornet.lit.recipe.Recipe: lr, its scaling, weight decay, warm-up, min lr,
            layer decay, schedule, drop path); the default is ``CLASSIFICATION_RECIPE``.
        mixup, cutmix: timm Mixup / CutMix alphas (0 = off), switch prob 0.5, with a soft-target loss.
        label_smoothing: label smoothing of the targets.
        ema_decay: EMA of the weights with timm's ModelEmaV3 (warm-up on); validated and tested beside the raw weights.
        channels_last, compile, grad_checkpointing: speed and memory switches.
    """

    monitor = "val/top1"
    selection_metrics = ("val/top1", "val/top1_ema")

    def __init__(
        self,
        *,
        backbone: str | nn.Module = "hornet_micro_gf",
        backbone_kwargs: dict | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        recipe: Recipe = CLASSIFICATION_RECIPE,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        label_smoothing: float = 0.0,
        ema_decay: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"model.label_smoothing must be in [0, 1); got {label_smoothing}")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"model.ema_decay must be in (0, 1) or null; got {ema_decay}")
        self.save_recipe(recipe, ignore=("backbone",) if isinstance(backbone, nn.Module) else ())
        if isinstance(backbone, nn.Module):
            self.backbone = backbone
        else:
            check_model_name(backbone, key="model.backbone")
            kwargs = {**input_size_kwargs(backbone, img_size), **(backbone_kwargs or {})}  # GF filters, windows
            try:
                self.backbone = timm.create_model(
                    backbone,
                    num_classes=num_classes,
                    in_chans=in_chans,
                    drop_path_rate=self.recipe.drop_path_rate,
                    **kwargs,
                )
            except (ValueError, TypeError) as err:  # a bad backbone_kwargs value, or a keyword the model lacks
                raise ValueError(
                    f"model.backbone {backbone} with model.backbone_kwargs {backbone_kwargs}: {err}"
                ) from err
        if grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        if channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if compile:
            compile_model(self.backbone)  # block by block, in place: the state-dict keys stay those of the backbone
        self.ema = ModelEmaV3(self.backbone, decay=ema_decay, use_warmup=True) if ema_decay else None
        self.mixup = (
            Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing, num_classes=num_classes)
            if mixup > 0 or cutmix > 0
            else None
        )
        self.train_loss = (
            SoftTargetCrossEntropy() if self.mixup else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        )
        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{k}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
                for split in ("val", "val_ema", "test", "test_ema")
                for k, top_k in (("top1", 1), ("top5", top5))
            }
        )
        # training accuracy: top-1 only, its inputs unchecked (the loss already saw them): it runs every step
        self.metrics["train_top1"] = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._group_settings()  # while the backbone is still unwrapped
        self.example_input_array = torch.zeros(1, in_chans, img_size, img_size)  # for the model summary's FLOPs

    def prediction_writer(self, run_dir: Path) -> PredictionWriter:
        return PredictionWriter(run_dir / "predictions.csv")

    def setup(self, stage: str) -> None:
        from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

        if self.ema is not None and isinstance(self.trainer.strategy, (FSDPStrategy, DeepSpeedStrategy)):
            raise ValueError(
                f"model.ema_decay: the EMA copy of the weights is not sharded and would average only this rank's "
                f"shard under {type(self.trainer.strategy).__name__}; use the ddp strategy for EMA, or ema_decay: null"
            )

    # --- forward ---------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    # --- training --------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        targets = y
        if self.mixup is not None:
            if len(x) % 2:
                raise ValueError(f"Mixup/CutMix need an even batch size; data.batch_size gives {len(x)}")
            x, targets = self.mixup(x, y)
        logits = self(x)
        loss = self.train_loss(logits, targets)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)  # all ranks' mean
        self.metrics["train_top1"](logits.detach(), y)
        self.log("train/top1", self.metrics["train_top1"], on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.backbone, step=self.global_step)
        super().on_train_batch_end(outputs, batch, batch_idx)  # the lr

    # --- evaluation ------------------------------------------------------------------------------------------------
    def _evaluate(self, batch, split: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), prog_bar=split == "val", sync_dist=True)
        models = [("", logits)]
        if self.ema is not None:
            ema_input = x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x
            models.append(("_ema", self.ema.module(ema_input)))
        for suffix, out in models:
            for k in ("top1", "top5"):
                metric = self.metrics[f"{split}{suffix}_{k}"]
                metric(out, y)
                self.log(f"{split}/{k}{suffix}", metric, prog_bar=(k == "top1"), on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        model = self.ema.module if self.ema is not None else self.backbone
        probs = model(x).softmax(dim=-1)
        top = probs.topk(min(5, probs.shape[-1]), dim=-1)
        return {"indices": top.indices, "probs": top.values}

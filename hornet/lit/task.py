"""What every hornet task (classification, segmentation) shares and tells the CLI, the suites and the reports.

A task is a LightningModule with a timm ``backbone``, optionally more trainable modules (a decoder), and these:

- ``monitor``: the validation metric (higher is better) that picks the best checkpoint;
- ``selection_metrics``: the validation metrics whose best value over the epochs a suite records;
- ``network()``: the network that maps an image to the task's output (whose params and MACs a suite records), and
  ``network_parts``: submodules of it counted on their own (``{"decoder": "decode_head"}``);
- ``prediction_writer(run_dir)``: what `hornet predict` writes;

and one optimisation recipe (``recipe``, a hornet.lit.recipe.Recipe): AdamW with timm's weight-decay (or layer-decay)
groups on the backbone, linear warm-up and cosine, poly or step decay per step; gradient clipping that also works under
FSDP, a non-finite-loss stop that every rank takes together.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch import Callback
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn

from hornet.lit.recipe import PAPER_BATCH, Recipe

__all__ = ["Task", "unwrapped_name"]

STEP_FRACTIONS, STEP_FACTOR = (8 / 12, 11 / 12), 0.1  # the 1x schedule: x 0.1 after epochs 8 and 11 of 12
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")  # FSDP, checkpoints, compile


def unwrapped_name(name: str) -> str:
    """A parameter's name as in the bare model: strategy and compile wrappers add path segments."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


class Task(L.LightningModule):
    """Base of hornet's LightningModules. Subclasses call ``save_recipe`` and set ``self.backbone``."""

    monitor: ClassVar[str]
    selection_metrics: ClassVar[tuple[str, ...]]
    backbone: nn.Module
    recipe: Recipe

    def save_recipe(self, recipe: Recipe, *, ignore: tuple[str, ...] = ()) -> None:
        """Keep ``recipe`` and save the hyperparameters, the recipe as plain data (checkpoints stay loadable with
        ``weights_only``)."""
        if not isinstance(recipe, Recipe):
            recipe = Recipe(**recipe)
        self.recipe = recipe
        self.save_hyperparameters(ignore=["recipe", *ignore], frame=inspect.currentframe().f_back)  # the __init__'s
        self.hparams["recipe"] = asdict(recipe)

    # --- what the CLI, suites and reports ask of a task -----------------------------------------------------------
    def describe(self) -> str:
        """The model being trained, as its config names it (for messages)."""
        backbone = self.hparams.get("backbone")
        name = backbone if isinstance(backbone, str) else type(self.backbone).__name__
        kwargs = self.hparams.get("backbone_kwargs")
        return f"model {name}" + (f" {kwargs}" if kwargs else "")

    def decoder_modules(self) -> dict[str, nn.Module]:
        """Trainable modules besides the backbone (trained at the base lr, decayed like the backbone)."""
        return {}

    network_parts: ClassVar[dict[str, str]] = {}

    def network(self) -> nn.Module:
        """The network from input image to output, as inference runs it (what a suite counts and times)."""
        return self.backbone

    def prediction_writer(self, run_dir: Path) -> Callback:
        raise NotImplementedError

    # --- training safeguards ------------------------------------------------------------------------------------
    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop on a non-finite loss; every rank takes the decision together (no rank left waiting)."""
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()} on rank {self.global_rank}) at step {self.global_step} of "
                f"run {self.trainer.default_root_dir}, {self.describe()}; try a lower model.recipe.lr (now "
                f"{self.effective_lr:.3g}), gradient clipping (trainer.gradient_clip_val) or trainer.precision 32"
            )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """The learning rate of the last parameter group (the decoder's, or the backbone's top) every step."""
        self.log("lr", self.trainer.optimizers[0].param_groups[-1]["lr"], on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, optimizer) -> None:
        """The gradients' total 2-norm before clipping (of this rank's shards under FSDP), one fused reduction."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads), on_step=True, on_epoch=False)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        model = self.trainer.strategy.model
        by_norm = gradient_clip_algorithm in (None, "norm")
        if gradient_clip_val and by_norm and isinstance(model, FullyShardedDataParallel):
            model.clip_grad_norm_(gradient_clip_val)  # the norm over every rank's shards (Lightning refuses its own)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # --- optimisation ----------------------------------------------------------------------------------------------
    @property
    def effective_lr(self) -> float:
        lr = self.recipe.lr
        if self.recipe.lr_scaling == "linear":
            datamodule = self.trainer.datamodule if self._trainer is not None else None
            batch = getattr(datamodule, "global_batch_size", None)
            if batch is None:
                raise ValueError("model.recipe.lr_scaling 'linear' needs a datamodule with a global_batch_size")
            lr = lr * batch / PAPER_BATCH
        return lr

    def _group_settings(self) -> dict[str, tuple[float, float]]:
        """(weight decay, lr scale) of every backbone parameter by name, from timm's grouping of the unwrapped model.

        Computed once, before a strategy wraps or shards the backbone: FSDP's flattened parameters are 1-D, which
        would hide which ones to decay, and their names gain wrapper prefixes. Subclasses call it in ``__init__``.
        A feature-pyramid backbone (timm's features_only getter) is grouped through the model it wraps.
        """
        if getattr(self, "_param_settings", None) is None:
            hp = self.recipe
            model, prefix = self.backbone, ""
            if not hasattr(model, "group_matcher") and hasattr(getattr(model, "model", None), "group_matcher"):
                model, prefix = model.model, "model."  # timm's FeatureGetterNet keeps the model under .model
            if hp.layer_decay is not None:
                groups = param_groups_layer_decay(model, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay)
            else:
                groups = param_groups_weight_decay(model, weight_decay=hp.weight_decay)
            names = {id(param): prefix + name for name, param in model.named_parameters()}
            self._param_settings = {
                names[id(param)]: (group["weight_decay"], group.get("lr_scale", 1.0))
                for group in groups
                for param in group["params"]
            }
        return self._param_settings

    def configure_optimizers(self):
        hp = self.recipe
        lr = self.effective_lr
        settings = self._group_settings()
        groups = {key: [] for key in settings.values()}  # timm's group order, so older checkpoints still resume
        named = [(name, p, settings.get(unwrapped_name(name))) for name, p in self.backbone.named_parameters()]
        named += [(n, p, None) for module in self.decoder_modules().values() for n, p in module.named_parameters()]
        for _, param, setting in named:  # the parameters the strategy will step
            if param.requires_grad:
                default = (hp.weight_decay if param.ndim > 1 else 0.0, 1.0)  # a decoder, or a parameter unfrozen since
                groups.setdefault(setting or default, []).append(param)
        param_groups = [
            {"params": params, "weight_decay": decay, "lr": lr * scale}
            for (decay, scale), params in groups.items()
            if params
        ]
        optimizer = torch.optim.AdamW(param_groups, lr=lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)  # max_epochs or max_steps, whichever ends first
        batches = self.trainer.num_training_batches  # per epoch, known once the line above has set up the data
        if isinstance(batches, int) and batches > 0:
            steps_per_epoch = max(math.ceil(batches / self.trainer.accumulate_grad_batches), 1)
        else:
            steps_per_epoch = max(total // max(self.trainer.max_epochs or 1, 1), 1)
        warmup = min(int(hp.warmup_epochs * steps_per_epoch), total - 1)
        floor = min(hp.min_lr / lr, 1.0)
        mode = hp.schedule
        poly = mode == "poly"
        step_epochs = hp.step_epochs
        milestones = (
            [int(epoch * steps_per_epoch) for epoch in step_epochs]
            if step_epochs is not None
            else [int(fraction * total) for fraction in STEP_FRACTIONS]
        )  # steps after which the step schedule decays

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if mode == "step":
                return max(STEP_FACTOR ** sum(step >= m for m in milestones), floor)
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            decay = 1 - progress if poly else 0.5 * (1 + math.cos(math.pi * progress))  # poly: power 1, as mmseg
            return floor + (1 - floor) * decay

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

"""The optimisation recipe every task trains with, as one typed object (``model.recipe`` in a config).

AdamW with timm's weight-decay (or layer-decay) groups on the backbone, linear warm-up, then cosine, poly or step decay
per step down to ``min_lr``, stochastic depth in the backbone. Each task has its own default (the released recipe of
its setting); a config states the whole recipe it trains with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLASSIFICATION_RECIPE", "DETECTION_RECIPE", "PAPER_BATCH", "RECIPE_KEYS", "SCHEDULES", "SEGMENTATION_RECIPE",
    "Recipe",
]  # fmt: skip

PAPER_BATCH = 4096  # the released recipe's lr is quoted for this total batch
SCHEDULES = ("cosine", "poly", "step")


@dataclass(frozen=True)
class Recipe:
    """How a task is optimised.

    Args:
        lr: peak learning rate (absolute, or per 4096 images with ``lr_scaling: linear``).
        lr_scaling: ``none``, or ``linear``: lr x global batch / 4096 (the paper's rule).
        weight_decay: AdamW decay of every backbone parameter with more than one dimension (as released: the GF
            filter is decayed; norms, biases and layer-scale gammas are not); decoders and necks likewise.
        warmup_epochs: linear warm-up (fractional epochs allowed).
        min_lr: the floor the decay ends at.
        layer_decay: layer-wise lr decay through the backbone's ``group_matcher`` (null = off).
        schedule: ``cosine``, ``poly`` (linear decay, as mmseg) or ``step`` (x 0.1 at each of ``step_epochs``).
        step_epochs: epochs after which the step schedule decays (null: at 8/12 and 11/12 of the training, the 1x
            schedule's 8 and 11 of 12).
        drop_path_rate: stochastic depth of the backbone.
    """

    lr: float
    lr_scaling: Literal["none", "linear"] = "none"
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    layer_decay: float | None = None
    schedule: Literal["cosine", "poly", "step"] = "cosine"
    step_epochs: tuple[float, ...] | None = None
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"model.recipe.lr must be > 0; got {self.lr}")
        if self.lr_scaling not in ("none", "linear"):
            raise ValueError(f"model.recipe.lr_scaling must be 'none' or 'linear'; got {self.lr_scaling!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"model.recipe.schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.min_lr < 0:
            raise ValueError(
                "model.recipe.weight_decay, warmup_epochs and min_lr must be >= 0; got "
                f"{self.weight_decay}, {self.warmup_epochs}, {self.min_lr}"
            )
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"model.recipe.layer_decay must be in (0, 1] or null; got {self.layer_decay}")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"model.recipe.drop_path_rate must be in [0, 1); got {self.drop_path_rate}")


RECIPE_KEYS = tuple(Recipe.__dataclass_fields__)
# each task's default: the released recipe of its setting
CLASSIFICATION_RECIPE = Recipe(lr=2e-3)
SEGMENTATION_RECIPE = Recipe(lr=1e-4, min_lr=0.0, schedule="poly")  # ADE20K UperNet: poly decay after warm-up
DETECTION_RECIPE = Recipe(lr=1e-4, warmup_epochs=0.1, min_lr=0.0, schedule="step")  # COCO 1x: x 0.1 at 8, 11 of 12

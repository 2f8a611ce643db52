"""HorNet models (plain nn.Modules) and their timm registration; import and run without Lightning."""

from hornet.models.compile import compile_model, model_blocks
from hornet.models.convert import checkpoint_filter_fn, read_released_checkpoint
from hornet.models.hornet import HorBlock, HorNet
from hornet.models.isotropic import ISOTROPIC, create_isotropic_model
from hornet.models.matching import MATCHED
from hornet.models.placement import PLACEMENTS, create_placement_model
from hornet.models.variants import (
    REFERENCE_MODELS,
    VARIANTS,
    Variant,
    check_model_name,
    create_hornet,
    create_model,
    input_size_kwargs,
)

__all__ = [
    "ISOTROPIC",
    "MATCHED",
    "PLACEMENTS",
    "REFERENCE_MODELS",
    "VARIANTS",
    "HorBlock",
    "HorNet",
    "Variant",
    "check_model_name",
    "checkpoint_filter_fn",
    "compile_model",
    "create_hornet",
    "create_isotropic_model",
    "create_model",
    "create_placement_model",
    "input_size_kwargs",
    "model_blocks",
    "read_released_checkpoint",
]

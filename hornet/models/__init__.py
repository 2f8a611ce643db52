"""HorNet models (plain nn.Modules) and their timm registration; import and run without Lightning."""

from hornet.models.convert import checkpoint_filter_fn, read_released_checkpoint
from hornet.models.hornet import HorBlock, HorNet
from hornet.models.variants import VARIANTS, Variant, check_model_name, create_hornet

__all__ = [
    "VARIANTS",
    "HorBlock",
    "HorNet",
    "Variant",
    "check_model_name",
    "checkpoint_filter_fn",
    "create_hornet",
    "read_released_checkpoint",
]

"""HorNet models (plain nn.Modules) and their timm registration; import and run without Lightning."""

from hornet.models.convert import checkpoint_filter_fn, read_released_checkpoint
from hornet.models.hornet import HorBlock, HorNet
from hornet.models.variants import VARIANTS, Variant, create_hornet

__all__ = [
    "VARIANTS",
    "HorBlock",
    "HorNet",
    "Variant",
    "checkpoint_filter_fn",
    "create_hornet",
    "read_released_checkpoint",
]

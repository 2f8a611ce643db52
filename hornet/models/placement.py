"""gnConv placed inside other blocks: timm ConvNeXt (instead of the depthwise conv) and timm Swin (instead of window
attention), each registered beside its unmodified baseline at the same width and depth as the small HorNets.

    convnext_{micro,nano}_plain    timm ConvNeXt, stem stride 2 (stage maps 16/8/4/2 at 32 px)
    convnext_{micro,nano}_gnconv   ... with every ConvNeXtBlock.conv_dw replaced by GnConv (NCHW in, NCHW out)
    swin_{micro,nano}_plain        timm Swin, patch 2, window 4
    swin_{micro,nano}_gnconv       ... with every block's window attention replaced by GnConv over the whole map

The replaced modules are removed (no unused parameters for DDP to complain about). ``orders``, ``mixers`` and
``scale`` work as for HorNet: per-stage interaction order and spatial mixer, and the gating scale s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from hornet.models.variants import register_entrypoint
from hornet.ops import GnConv

__all__ = ["PLACEMENTS", "GnConvSwinBlock", "PlacementSize", "TokensGnConv", "create_placement_model"]


@dataclass(frozen=True)
class PlacementSize:
    """Width and depth shared with the HorNet variant of the same name (hornet_micro / hornet_nano)."""

    base_dim: int
    depths: tuple[int, int, int, int]

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.base_dim * 2**i for i in range(4))


SIZES = {"micro": PlacementSize(16, (1, 1, 2, 1)), "nano": PlacementSize(32, (2, 2, 6, 2))}
FAMILIES = ("convnext", "swin")
PLACEMENTS = [f"{family}_{size}_{kind}" for family in FAMILIES for size in SIZES for kind in ("plain", "gnconv")]
TIMM_FACTORY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # create_model's, not the model's


class TokensGnConv(nn.Module):
    """GnConv on channels-last tokens (B, H, W, C), as Swin blocks carry them."""

    def __init__(self, dim: int, *, order: int, mixer: str, scale: float) -> None:
        super().__init__()
        self.gnconv = GnConv(dim, order=order, mixer=mixer, scale=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return self.gnconv(x).permute(0, 2, 3, 1)  # -> (B, H, W, C)


class GnConvSwinBlock(SwinTransformerBlock):
    """A Swin block whose token mixer is gnConv over the whole map: no shift, no windows, no attention mask."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)  # (B, H, W, C) -> (B, H, W, C)


def _check_per_stage(name: str, values: Sequence, kind: type) -> tuple:
    values = tuple(values)
    if len(values) != 4 or not all(isinstance(v, kind) for v in values):
        raise ValueError(f"{name} must list 4 {kind.__name__} values, one per stage; got {values!r}")
    return values


def _swap_convnext(model: ConvNeXt, orders: tuple[int, ...], mixers: tuple[str, ...], scale: float) -> None:
    for stage, order, mixer in zip(model.stages, orders, mixers, strict=True):
        for block in stage.blocks:
            assert isinstance(block, ConvNeXtBlock)
            block.conv_dw = GnConv(block.conv_dw.in_channels, order=order, mixer=mixer, scale=scale)


def _swap_swin(model: SwinTransformer, orders: tuple[int, ...], mixers: tuple[str, ...], scale: float) -> None:
    for stage, order, mixer in zip(model.layers, orders, mixers, strict=True):
        for block in stage.blocks:
            assert type(block) is SwinTransformerBlock
            dim = block.norm1.normalized_shape[0]
            block.attn = TokensGnConv(dim, order=order, mixer=mixer, scale=scale)  # the WindowAttention is dropped
            block.attn_mask = None
            block.__class__ = GnConvSwinBlock


def create_placement_model(
    name: str,
    pretrained: bool = False,
    *,
    img_size: int = 32,
    orders: Sequence[int] = (2, 3, 4, 5),
    mixers: Sequence[str] = ("dw7", "dw7", "dw7", "dw7"),
    scale: float = 1 / 3,
    **kwargs,
) -> nn.Module:
    """Build one of ``PLACEMENTS``; kwargs go to timm's ConvNeXt / SwinTransformer (num_classes, in_chans, ...)."""
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights (it is defined here for ablations)")
    family, size_name, kind = name.split("_")
    size = SIZES[size_name]
    orders = _check_per_stage("orders", orders, int)
    mixers = _check_per_stage("mixers", mixers, str)
    for key in TIMM_FACTORY_KWARGS:
        kwargs.pop(key, None)
    if family == "convnext":
        model = ConvNeXt(depths=size.depths, dims=size.dims, patch_size=2, **kwargs)
        # timm reads patch_size 2 as half of a stride-4 stem and downsamples again in stage 0; undo that, so the
        # stage maps are 16/8/4/2 at 32 px like the small HorNets (its downsample layer is removed, not bypassed)
        model.stages[0].downsample = nn.Identity()
        for info, reduction in zip(model.feature_info, (2, 4, 8, 16), strict=True):
            info["reduction"] = reduction
        swap_fn = _swap_convnext
    else:
        heads = tuple(max(d // 16, 1) for d in size.dims)
        model = SwinTransformer(
            img_size=img_size, patch_size=2, window_size=4, embed_dim=size.base_dim, depths=size.depths,
            num_heads=heads, **kwargs,
        )  # fmt: skip
        swap_fn = _swap_swin
    if kind == "gnconv":
        swap_fn(model, orders, mixers, scale)
    model.pretrained_cfg = dict(
        input_size=(kwargs.get("in_chans", 3), img_size, img_size), crop_pct=1.0, interpolation="bicubic",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), num_classes=kwargs.get("num_classes", 1000),
        classifier="head.fc", architecture=name,
    )  # fmt: skip
    return model


for _name in PLACEMENTS:
    register_entrypoint(_name, create_placement_model, __name__, f"{_name}: see hornet.models.placement")

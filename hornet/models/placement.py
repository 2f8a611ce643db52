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
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from hornet.models.convert import local_weights_overlay
from hornet.models.hornet import per_stage
from hornet.models.variants import CPU_SIZES
from hornet.ops import GnConv

__all__ = [
    "PLACEMENTS", "GnConvSwinBlock", "PlacementConvNeXt", "PlacementSize", "PlacementSwin", "TokensGnConv",
    "create_placement_model",
]  # fmt: skip


@dataclass(frozen=True)
class PlacementSize:
    """Width and depth shared with the HorNet variant of the same name (hornet_micro / hornet_nano)."""

    base_dim: int
    depths: tuple[int, int, int, int]

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.base_dim * 2**i for i in range(4))


SIZES = {name: PlacementSize(**size) for name, size in CPU_SIZES.items()}
FAMILIES = ("convnext", "swin")
PLACEMENTS = [f"{family}_{size}_{kind}" for family in FAMILIES for size in SIZES for kind in ("plain", "gnconv")]
IMG_SIZE = 32  # the default input size: stage maps 16/8/4/2


class TokensGnConv(nn.Module):
    """GnConv on channels-last tokens (B, H, W, C), as Swin blocks carry them."""

    def __init__(self, gnconv: GnConv) -> None:
        super().__init__()
        self.gnconv = gnconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return self.gnconv(x).permute(0, 2, 3, 1)  # -> (B, H, W, C)


class GnConvSwinBlock(SwinTransformerBlock):
    """A Swin block whose token mixer is gnConv over the whole map: no shift, no windows, no attention mask."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)  # (B, H, W, C) -> (B, H, W, C)

    def set_input_size(self, feat_size: tuple[int, int], window_size, always_partition=None) -> None:
        """A new input size changes only the recorded resolution: gnConv has no windows, shift or mask to adapt."""
        self.input_resolution = feat_size


def _gnconv(dim: int, order: int, mixer: str, scale: float, factory: dict) -> GnConv:
    """A GnConv on the device and in the dtype timm's factory kwargs ask the host model for."""
    device, dtype = factory.get("device"), factory.get("dtype")
    with torch.device(device) if device is not None else nullcontext():
        module = GnConv(dim, order=order, mixer=mixer, scale=scale)
    return module.to(dtype) if dtype is not None else module


class PlacementConvNeXt(ConvNeXt):
    """timm's ConvNeXt at a small HorNet's width and depth with a stride-2 stem; with ``gnconv``, every block's
    depthwise conv (``ConvNeXtBlock.conv_dw``, NCHW in and out) is a GnConv with the stage's order and mixer."""

    def __init__(
        self, *, size: PlacementSize, gnconv: bool, orders: Sequence[int], mixers: Sequence[str], scale: float, **kwargs
    ) -> None:
        kwargs.pop("img_size", None)  # convolutional: any input size
        super().__init__(depths=size.depths, dims=size.dims, patch_size=2, **kwargs)
        # timm reads patch_size 2 as half of a stride-4 stem and downsamples again in stage 0; undo that, so the
        # stage maps are 16/8/4/2 at 32 px like the small HorNets (its downsample layer is removed, not bypassed)
        self.stages[0].downsample = nn.Identity()
        for info, reduction in zip(self.feature_info, (2, 4, 8, 16), strict=True):
            info["reduction"] = reduction
        if gnconv:
            for stage, order, mixer in zip(self.stages, orders, mixers, strict=True):
                for block in stage.blocks:
                    assert isinstance(block, ConvNeXtBlock)
                    block.conv_dw = _gnconv(block.conv_dw.in_channels, order, mixer, scale, kwargs)


class PlacementSwin(SwinTransformer):
    """timm's Swin (patch 2, window 4) at a small HorNet's width and depth; with ``gnconv``, every block's window
    attention is replaced by GnConv over the whole map (the WindowAttention modules and their masks are removed)."""

    def __init__(
        self, *, size: PlacementSize, gnconv: bool, orders: Sequence[int], mixers: Sequence[str], scale: float, **kwargs
    ) -> None:
        heads = tuple(d // 16 if d % 16 == 0 else 1 for d in size.dims)  # heads of 16 channels (1 for odd widths)
        super().__init__(
            patch_size=2, window_size=4, embed_dim=size.base_dim, depths=size.depths, num_heads=heads, **kwargs
        )
        if gnconv:
            for stage, order, mixer in zip(self.layers, orders, mixers, strict=True):
                for block in stage.blocks:
                    assert type(block) is SwinTransformerBlock
                    dim = block.norm1.normalized_shape[0]
                    block.attn = TokensGnConv(_gnconv(dim, order, mixer, scale, kwargs))  # attention dropped
                    block.attn_mask = None
                    block.__class__ = GnConvSwinBlock


CLASSIFIER = "head.fc"  # timm's ConvNeXt / Swin classifier module


def _default_cfg(family: str) -> dict:
    return dict(
        url="", num_classes=1000, input_size=(3, IMG_SIZE, IMG_SIZE), pool_size=(2, 2), crop_pct=1.0,
        interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, classifier=CLASSIFIER,
        first_conv="stem.0" if family == "convnext" else "patch_embed.proj",
        description=f"timm {family} at a small HorNet's width and depth, for gnConv placement ablations",
    )  # fmt: skip


default_cfgs = generate_default_cfgs({name: _default_cfg(name.split("_")[0]) for name in PLACEMENTS})


def create_placement_model(
    name: str,
    pretrained: bool = False,
    *,
    img_size: int = IMG_SIZE,
    orders: Sequence[int] = (2, 3, 4, 5),
    mixers: Sequence[str] = ("dw7", "dw7", "dw7", "dw7"),
    scale: float = 1 / 3,
    depths: Sequence[int] | None = None,
    base_dim: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build one of ``PLACEMENTS`` through timm's builder; ``depths`` and ``base_dim`` override its size (FLOPs
    matching, hornet.models.matching); kwargs go to timm's ConvNeXt / SwinTransformer (num_classes, in_chans,
    features_only, ...)."""
    local = local_weights_overlay(
        pretrained, kwargs.pop("pretrained_cfg_overlay", None), classifier=CLASSIFIER, unreleased=name
    )
    family, size_name, kind = name.split("_")
    size = PlacementSize(base_dim or SIZES[size_name].base_dim, tuple(depths or SIZES[size_name].depths))
    orders = tuple(per_stage("orders", orders, kind=int))
    mixers = tuple(per_stage("mixers", mixers, kind=str))
    model_cls = PlacementConvNeXt if family == "convnext" else PlacementSwin
    height, width = to_2tuple(img_size)
    overlay = dict(input_size=(kwargs.get("in_chans", 3), height, width), pool_size=(height // 16, width // 16))
    overlay |= local
    feature_cfg = dict(out_indices=(0, 1, 2, 3), flatten_sequential=True)
    model = build_model_with_cfg(
        model_cls, name, pretrained, pretrained_cfg_overlay=overlay, feature_cfg=feature_cfg, size=size,
        gnconv=kind == "gnconv", orders=orders, mixers=mixers, scale=scale, img_size=img_size, **kwargs,
    )  # fmt: skip
    model.pretrained_cfg["state_dict"] = None  # the weights are in the model now; do not keep a second copy
    return model


# --- timm entry points: one function per model ----------------------------------------------------------------
@register_model
def convnext_micro_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm ConvNeXt at hornet_micro's width and depth, unmodified (the placement baseline)."""
    return create_placement_model("convnext_micro_plain", pretrained, **kwargs)


@register_model
def convnext_micro_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm ConvNeXt at hornet_micro's width and depth, with gnConv in every block."""
    return create_placement_model("convnext_micro_gnconv", pretrained, **kwargs)


@register_model
def convnext_nano_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm ConvNeXt at hornet_nano's width and depth, unmodified (the placement baseline)."""
    return create_placement_model("convnext_nano_plain", pretrained, **kwargs)


@register_model
def convnext_nano_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm ConvNeXt at hornet_nano's width and depth, with gnConv in every block."""
    return create_placement_model("convnext_nano_gnconv", pretrained, **kwargs)


@register_model
def swin_micro_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm Swin at hornet_micro's width and depth, unmodified (the placement baseline)."""
    return create_placement_model("swin_micro_plain", pretrained, **kwargs)


@register_model
def swin_micro_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm Swin at hornet_micro's width and depth, with gnConv in every block."""
    return create_placement_model("swin_micro_gnconv", pretrained, **kwargs)


@register_model
def swin_nano_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm Swin at hornet_nano's width and depth, unmodified (the placement baseline)."""
    return create_placement_model("swin_nano_plain", pretrained, **kwargs)


@register_model
def swin_nano_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm Swin at hornet_nano's width and depth, with gnConv in every block."""
    return create_placement_model("swin_nano_gnconv", pretrained, **kwargs)

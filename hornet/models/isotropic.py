"""Isotropic hosts for gnConv: one resolution and one width throughout, as DeiT / ViT (the paper compares isotropic
HorNets with DeiT-style Transformers).

    vit_iso_{micro,small}_plain     timm's VisionTransformer, no class token, global average pooling
    vit_iso_{micro,small}_gnconv    ... with every block's self-attention replaced by GnConv over the token map
    hornet_iso_{micro,small}        an isotropic HorNet: patchify stem, HorBlocks of one order at one resolution

Sizes: ``micro`` for 28-64 px data (patch 4: an 8 x 8 token map at 32 px, width 32, depth 4, one head: about the
MACs of hornet_micro) and ``small`` at the paper's scale (DeiT-S: patch 16 at 224 px, a 14 x 14 map, width 384,
depth 12, 6 heads). The gnConv arms keep the
host's layout (pre-norm residual blocks with the same MLP); only the token mixer changes, and the replaced attention
modules are removed. ``orders``-style settings: one ``order``, ``mixer`` and ``scale`` for every block.

A gnConv arm at the host's depth differs from it in params and MACs; ``hornet.models.matching`` finds the depth (then
width) at which it matches its plain baseline, and the ``*_matched`` models registered there are those settings.
"""

# real (not postponed) annotations: FX copies the forward's annotations into the code it generates (TorchScript)
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm2d, SelectAdaptivePool2d, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from hornet.models.convert import local_weights_overlay
from hornet.models.hornet import HorBlock, PooledClassifierHead
from hornet.ops import GnConv

__all__ = ["ISOTROPIC", "IsotropicHorNet", "IsotropicSize", "TokenMapGnConv", "create_isotropic_model"]


@dataclass(frozen=True)
class IsotropicSize:
    """One isotropic model size: patch, width, depth, attention heads, the input it is built for, gnConv's order."""

    patch: int
    width: int
    depth: int
    heads: int
    img_size: int
    order: int = 3  # gnConv's interaction order in every block (the 14 x 14 map of stage 3 of HorNet-S has order 4)


SIZES = {
    "micro": IsotropicSize(patch=4, width=32, depth=4, heads=1, img_size=32),
    "small": IsotropicSize(patch=16, width=384, depth=12, heads=6, img_size=224),
}
ISOTROPIC = [
    *(f"vit_iso_{size}_{kind}" for size in SIZES for kind in ("plain", "gnconv")),
    *(f"hornet_iso_{size}" for size in SIZES),
]


class TokenMapGnConv(nn.Module):
    """GnConv over a ViT's tokens: (B, N, C) with N = H x W (no class token) -> the (B, C, H, W) map -> (B, N, C)."""

    def __init__(self, gnconv: GnConv, grid: tuple[int, int]) -> None:
        super().__init__()
        self.gnconv = gnconv
        self.grid = grid

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = x.transpose(1, 2).unflatten(2, self.grid)  # (B, N, C) -> (B, C, H, W): the ViT's fixed token grid
        return self.gnconv(x).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, C)


def _gnconv(dim: int, order: int, mixer: str, scale: float, feature_size, factory: dict) -> GnConv:
    """A GnConv on the device and in the dtype timm's factory kwargs ask the host model for."""
    device, dtype = factory.get("device"), factory.get("dtype")
    with torch.device(device) if device is not None else nullcontext():
        module = GnConv(dim, order=order, mixer=mixer, scale=scale, feature_size=feature_size)
    return module.to(dtype) if dtype is not None else module


class IsotropicViT(VisionTransformer):
    """timm's VisionTransformer without a class token, pooled by average; with ``gnconv``, every block's attention
    (``Block.attn``) is a TokenMapGnConv of ``order``, ``mixer`` and ``scale`` (the attention modules are gone)."""

    def __init__(self, *, gnconv: bool, order: int, mixer: str, scale: float, **kwargs) -> None:
        super().__init__(class_token=False, global_pool="avg", **kwargs)
        if gnconv:
            grid = self.patch_embed.grid_size
            for block in self.blocks:
                block.attn = TokenMapGnConv(_gnconv(self.embed_dim, order, mixer, scale, grid, kwargs), grid)


class IsotropicHorNet(PooledClassifierHead, nn.Module):
    """An isotropic HorNet: a ``patch x patch`` stride-``patch`` conv stem with a LayerNorm, ``depth`` HorBlocks of
    width ``width`` and one ``order`` at that single resolution, global average pooling, LayerNorm, a linear head.

    timm's model surface as HorNet's: ``forward_features`` / ``forward_head``, ``forward_intermediates`` (any blocks,
    all at stride ``patch``), ``group_matcher`` (stem, then each block), classifier reset, gradient checkpointing.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 384,
        depth: int = 12,
        order: int = 3,
        mixer: str = "dw7",
        scale: float = 1 / 3,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        grid = tuple(side // patch_size for side in to_2tuple(img_size))
        self.num_classes, self.num_features, self.embed_dim = num_classes, embed_dim, embed_dim
        self.head_hidden_size, self.in_chans = embed_dim, in_chans
        self.grad_checkpointing = False
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size), LayerNorm2d(embed_dim, eps=1e-6)
        )
        rates = [rate.item() for rate in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        block = dict(order=order, mixer=mixer, scale=scale, feature_size=grid, mlp_ratio=mlp_ratio)
        self.blocks = nn.Sequential(
            *(HorBlock(embed_dim, drop_path=r, layer_scale_init_value=layer_scale_init_value, **block) for r in rates)
        )
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # --- timm model surface -------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stem", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    def stem_weight(self) -> torch.Tensor:
        return self.stem[0].weight

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Block outputs (B, C, H / patch, W / patch) for ``indices`` (the last n blocks for an int)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW'; got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        last = max_index if stop_early else len(self.blocks) - 1
        x = self.stem(x)
        intermediates = []
        for i in range(last + 1):
            x = self.blocks[i](x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, in_chans, H, W) -> (B, C, H / patch, W / patch)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _default_cfg(name: str) -> dict:
    size = SIZES[name.split("_")[2]]
    hornet = name.startswith("hornet")
    first_conv = "stem.0" if hornet else "patch_embed.proj"
    pool_size = (size.img_size // size.patch,) * 2 if hornet else None  # the ViT's features are tokens
    return dict(
        url="", num_classes=1000, input_size=(3, size.img_size, size.img_size), pool_size=pool_size, crop_pct=1.0,
        interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, classifier="head",
        first_conv=first_conv, fixed_input_size=not hornet,
        description=f"isotropic {name.split('_')[0]} for gnConv placement ablations ({name.split('_')[2]})",
    )  # fmt: skip


default_cfgs = generate_default_cfgs({name: _default_cfg(name) for name in ISOTROPIC})


def isotropic_kwargs(name: str, **overrides) -> dict:
    """The constructor arguments of ``name`` (``depth`` and ``width`` may be overridden, e.g. by FLOPs matching)."""
    size = SIZES[name.split("_")[2]]
    width = overrides.pop("width", size.width)
    common = dict(img_size=size.img_size, patch_size=size.patch, embed_dim=width, depth=size.depth)
    if name.startswith("hornet"):
        common |= dict(order=size.order)
    else:
        heads = max(width // (size.width // size.heads), 1)  # the host's head width (64) kept when width changes
        heads = heads if width % heads == 0 else 1
        common |= dict(num_heads=heads, gnconv=name.endswith("gnconv"), order=size.order, mixer="dw7", scale=1 / 3)
    return common | overrides


def create_isotropic_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build one of ``ISOTROPIC`` through timm's builder; kwargs override its constructor arguments."""
    local = local_weights_overlay(pretrained, kwargs.pop("pretrained_cfg_overlay", None), unreleased=name)
    base = name.removesuffix("_matched")
    model_cls: Callable[..., nn.Module] = IsotropicHorNet if base.startswith("hornet") else IsotropicViT
    model_args = isotropic_kwargs(base, **kwargs)
    height, width = to_2tuple(model_args["img_size"])
    overlay = dict(input_size=(model_args.get("in_chans", 3), height, width))
    if model_cls is IsotropicHorNet:
        overlay["pool_size"] = (height // model_args["patch_size"], width // model_args["patch_size"])
    overlay |= local
    depth = model_args["depth"]
    feature_cfg = dict(out_indices=tuple(range(max(depth - 4, 0), depth)), feature_cls="getter")  # the last 4 blocks
    model = build_model_with_cfg(
        model_cls, name, pretrained, pretrained_cfg_overlay=overlay, feature_cfg=feature_cfg, **model_args
    )
    model.pretrained_cfg["state_dict"] = None  # the weights are in the model now; do not keep a second copy
    return model


# --- timm entry points: one function per model ----------------------------------------------------------------
@register_model
def vit_iso_micro_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic ViT (micro), plain (self-attention)."""
    return create_isotropic_model("vit_iso_micro_plain", pretrained, **kwargs)


@register_model
def vit_iso_micro_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic ViT (micro), with gnConv over the token map in every block."""
    return create_isotropic_model("vit_iso_micro_gnconv", pretrained, **kwargs)


@register_model
def vit_iso_small_plain(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic ViT (small), plain (self-attention)."""
    return create_isotropic_model("vit_iso_small_plain", pretrained, **kwargs)


@register_model
def vit_iso_small_gnconv(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic ViT (small), with gnConv over the token map in every block."""
    return create_isotropic_model("vit_iso_small_gnconv", pretrained, **kwargs)


@register_model
def hornet_iso_micro(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic HorNet (micro): patchify stem, HorBlocks of one order at one resolution."""
    return create_isotropic_model("hornet_iso_micro", pretrained, **kwargs)


@register_model
def hornet_iso_small(pretrained: bool = False, **kwargs) -> nn.Module:
    """Isotropic HorNet (small): patchify stem, HorBlocks of one order at one resolution."""
    return create_isotropic_model("hornet_iso_small", pretrained, **kwargs)

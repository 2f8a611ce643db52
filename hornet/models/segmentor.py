"""A semantic segmentor: any timm backbone as a four-level feature pyramid, a decode head, an optional auxiliary head.

Decoders are data (``DECODERS``): ``upernet`` (the released UPerNet, 3x3 bottleneck), ``horfpn_7x7`` and
``horfpn_gf`` (the same head with the gnConv bottleneck, hornet.models.horfpn), ``semantic_fpn`` (a lighter head).
The backbone is timm's ``features_only`` wrapper that calls the model's ``forward_intermediates`` (timm's "getter"):
parameter names stay the model's under ``model.``, so its ``group_matcher`` (layer decay) and classification
checkpoints apply unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from hornet.models.convert import checkpoint_filter_fn, describe_state_dict_mismatch, read_released_checkpoint
from hornet.models.decoders import FCNHead, SemanticFPNHead, UPerHead
from hornet.models.horfpn import HORFPN_MIXERS, GnConvFusion
from hornet.models.hornet import HorNet
from hornet.models.variants import check_model_name, input_size_kwargs

__all__ = [
    "DECODERS",
    "Decoder",
    "Segmentor",
    "create_feature_backbone",
    "create_segmentor",
    "load_backbone_weights",
    "slide_inference",
]

LEVELS = 4  # the pyramid the decoders take: the backbone's last four feature levels


@dataclass(frozen=True)
class Decoder:
    """A decode head: ``head`` is ``uper`` or ``fpn``; ``mixer`` set means UPerNet with HorFPN's gnConv bottleneck."""

    head: str
    mixer: str | None = None
    description: str = ""


DECODERS = {
    "upernet": Decoder("uper", description="UPerNet: PPM + FPN, 3x3 conv bottleneck (as released)"),
    "horfpn_7x7": Decoder("uper", HORFPN_MIXERS["horfpn_7x7"], "HorFPN-7x7: UPerNet, gnConv bottleneck, dw 7x7"),
    "horfpn_gf": Decoder(
        "uper", HORFPN_MIXERS["horfpn_gf"], "HorFPN-GF: UPerNet, gnConv bottleneck, Global-Local Filter"
    ),
    "semantic_fpn": Decoder("fpn", description="semantic FPN: top-down pyramid, upsampling heads summed"),
}


def create_feature_backbone(name: str, *, in_chans: int, img_size: int, **kwargs) -> nn.Module:
    """The timm model ``name`` as ``features_only`` (its last four levels, NCHW), or a ValueError saying why not."""
    check_model_name(name, key="model.backbone")
    kwargs = {**input_size_kwargs(name, img_size), **kwargs}  # GF filters, Swin windows, ViT position embeddings
    kwargs.setdefault("device", torch.get_default_device())  # timm would build on the CPU inside a meta context
    try:
        return timm.create_model(
            name, features_only=True, feature_cls="getter", out_indices=tuple(range(-LEVELS, 0)),
            in_chans=in_chans, **kwargs,
        )  # fmt: skip
    except (RuntimeError, ValueError, TypeError, AssertionError, AttributeError, NotImplementedError) as err:
        raise ValueError(
            f"model.backbone {name} cannot give a feature pyramid (timm features_only with forward_intermediates, "
            f"{LEVELS} levels): {type(err).__name__}: {err}"
        ) from None


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Initialise a feature backbone from ``path``: a `hornet fit` classification checkpoint (its ``backbone.*``), a
    released HorNet checkpoint or a timm state dict. The classifier's weights are left out; any other missing or
    misshapen weight is an error."""
    model = backbone.model  # timm's getter keeps the whole model (head pruned) under .model
    expected = model.state_dict()
    state = {k: v for k, v in read_released_checkpoint(path).items() if k in expected}  # not the pruned head
    if isinstance(model, HorNet):
        state = checkpoint_filter_fn(state, model)  # GF filters resized to this model's maps
    problems = describe_state_dict_mismatch(state, expected)
    if problems:
        raise ValueError(f"model.backbone_checkpoint {os.fspath(path)}: {problems}")
    model.load_state_dict(state)


class Segmentor(nn.Module):
    """image -> per-pixel class logits at the image's size. ``forward_train`` also returns the auxiliary logits, at
    their feature maps' size (the loss upsamples them to the labels)."""

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, aux_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.aux_level = LEVELS - 2  # stage 3 of 4, as UPerNet's auxiliary FCN head

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.backbone(x)  # LEVELS x (B, C_l, H / r_l, W / r_l)
        aux = self.aux_head(features[self.aux_level]) if self.aux_head is not None else None
        return self.decode_head(features), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decode_head(self.backbone(x))  # (B, K, H / r_0, W / r_0)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)


def create_segmentor(
    backbone: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 512,
    decoder: str = "upernet",
    channels: int = 512,
    gnconv_order: int = 2,
    gnconv_mixer: str | None = None,
    gnconv_scale: float = 1.0,
    aux_channels: int | None = 256,
    backbone_kwargs: dict | None = None,
) -> Segmentor:
    """Build a Segmentor. ``gnconv_*`` set HorFPN's bottleneck (order 2, the decoder's mixer, s = 1 as released);
    ``aux_channels`` None leaves out the auxiliary head. GF filters are sized for the finest level at ``img_size``."""
    if decoder not in DECODERS:
        raise ValueError(f"model.decoder must be one of {sorted(DECODERS)}; got {decoder!r}")
    if channels < 1 or (aux_channels is not None and aux_channels < 1):
        raise ValueError(f"model.channels and model.aux_channels must be positive; got {channels}, {aux_channels}")
    spec = DECODERS[decoder]
    features = create_feature_backbone(backbone, in_chans=in_chans, img_size=img_size, **(backbone_kwargs or {}))
    in_channels: Sequence[int] = features.feature_info.channels()
    if spec.head == "fpn":
        head = SemanticFPNHead(in_channels, num_classes, channels=channels)
    else:
        fuse = None
        if spec.mixer is not None:
            finest = -(-img_size // features.feature_info.reduction()[0])  # ceil: the finest map's side
            mixer = gnconv_mixer or spec.mixer

            def fuse(concatenated: int, width: int) -> nn.Module:
                return GnConvFusion(
                    concatenated, width, order=gnconv_order, mixer=mixer, scale=gnconv_scale,
                    feature_size=(finest, finest),
                )  # fmt: skip

        head = UPerHead(in_channels, num_classes, channels=channels, fuse=fuse)
    aux = FCNHead(in_channels[LEVELS - 2], num_classes, channels=aux_channels) if aux_channels else None
    return Segmentor(features, head, aux)


def slide_inference(network: nn.Module, x: torch.Tensor, *, crop: int, stride: int, num_classes: int) -> torch.Tensor:
    """Logits of ``network`` over ``crop x crop`` windows every ``stride`` px (the last window flush with the edge),
    averaged where windows overlap; an image smaller than a window is run whole. (B, C, H, W) -> (B, K, H, W)."""
    if stride < 1 or crop < 1:
        raise ValueError(f"model.slide_crop and model.slide_stride must be positive; got {crop}, {stride}")
    batch, _, height, width = x.shape
    if height <= crop and width <= crop:
        return network(x)
    logits = x.new_zeros(batch, num_classes, height, width)
    counts = x.new_zeros(1, 1, height, width)
    rows = range(0, max(height - crop, 0) + stride, stride)
    cols = range(0, max(width - crop, 0) + stride, stride)
    for top in rows:
        for left in cols:
            top_, left_ = max(min(top, height - crop), 0), max(min(left, width - crop), 0)  # flush with the edge
            window = x[:, :, top_ : top_ + crop, left_ : left_ + crop]  # (B, C, h, w), h, w <= crop
            logits[:, :, top_ : top_ + crop, left_ : left_ + crop] += network(window)
            counts[:, :, top_ : top_ + crop, left_ : left_ + crop] += 1
    return logits / counts

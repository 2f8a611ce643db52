"""A plain transcription of the released HorNet math: the baseline that `hornet bench` races and tests compare to.

Same constructor and state-dict keys as :class:`hornet.models.HorNet`; only the block internals differ: the
channels-first LayerNorm is written out as mean/var ops, 1x1 projections are NCHW convolutions, the GF halves are
concatenated through a copy, exactly as in the authors' code. Registered as ``<variant>_reference``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from hornet.models.hornet import HorNet
from hornet.ops import gnconv_dims, parse_mixer
from hornet.ops.mixers import filter_size_for

__all__ = ["ReferenceHorNet"]


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of (B, C, H, W), written out as in the released code."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ReferenceGlobalLocalFilter(nn.Module):
    def __init__(self, channels: int, *, feature_size: Sequence[int]) -> None:
        super().__init__()
        half = channels // 2
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, bias=False, groups=half)
        self.complex_weight = nn.Parameter(torch.randn(half, *filter_size_for(feature_size), 2) * 0.02)
        trunc_normal_(self.complex_weight, std=0.02)
        self.pre_norm = ChannelsFirstLayerNorm(channels)
        self.post_norm = ChannelsFirstLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        x1, x2 = torch.chunk(x, 2, dim=1)
        x1 = self.dw(x1)
        x2 = x2.to(torch.float32)
        batch, channels, height, width = x2.shape
        x2 = torch.fft.rfft2(x2, dim=(2, 3), norm="ortho")
        weight = self.complex_weight
        if weight.shape[1:3] != x2.shape[2:4]:
            weight = F.interpolate(
                weight.permute(3, 0, 1, 2), size=x2.shape[2:4], mode="bilinear", align_corners=True
            ).permute(1, 2, 3, 0)
        x2 = x2 * torch.complex(weight[..., 0], weight[..., 1])
        x2 = torch.fft.irfft2(x2, s=(height, width), dim=(2, 3), norm="ortho")
        x = torch.cat([x1.unsqueeze(2), x2.unsqueeze(2)], dim=2).reshape(batch, 2 * channels, height, width)
        return self.post_norm(x)


class ReferenceGnConv(nn.Module):
    def __init__(self, dim: int, *, order: int, mixer: str, scale: float, feature_size: Sequence[int]) -> None:
        super().__init__()
        self.order, self.dims, self.scale = order, gnconv_dims(dim, order), scale
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        kind, kernel_size = parse_mixer(mixer)
        if kind == "gf":
            self.dwconv = ReferenceGlobalLocalFilter(sum(self.dims), feature_size=feature_size)
        else:
            self.dwconv = nn.Conv2d(
                sum(self.dims), sum(self.dims), kernel_size, padding=kernel_size // 2, groups=sum(self.dims)
            )
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList([nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused_x = self.proj_in(x)
        pwa, abc = torch.split(fused_x, (self.dims[0], sum(self.dims)), dim=1)
        dw_abc = self.dwconv(abc) * self.scale
        dw_list = torch.split(dw_abc, self.dims, dim=1)
        x = pwa * dw_list[0]
        for i in range(self.order - 1):
            x = self.pws[i](x) * dw_list[i + 1]
        return self.proj_out(x)


class ReferenceHorBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        order: int,
        mixer: str,
        scale: float,
        feature_size: Sequence[int],
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = ChannelsFirstLayerNorm(dim)
        self.gnconv = ReferenceGnConv(dim, order=order, mixer=mixer, scale=scale, feature_size=feature_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma1 = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None
        self.gamma2 = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        gamma1 = self.gamma1.view(channels, 1, 1) if self.gamma1 is not None else 1
        x = x + self.drop_path(gamma1 * self.gnconv(self.norm1(x)))
        shortcut = x
        x = x.permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm2(x))))
        if self.gamma2 is not None:
            x = self.gamma2 * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class ReferenceHorNet(HorNet):
    """HorNet built from the plain released blocks and channels-first norms (same keys, same function)."""

    block_cls = ReferenceHorBlock
    norm2d_cls = ChannelsFirstLayerNorm
    channels_last_compute = False

"""Segmentation decoders over a four-level feature pyramid: UPerNet (and HorFPN, its gnConv-fused twin), a light
semantic-FPN head, and the FCN head used as the auxiliary head.

UPerNet as in mmseg's UPerHead (the authors' segmentation code builds on it): pyramid pooling on the last level,
1x1 laterals, a top-down sum, a 3x3 conv per level, every level upsampled to the finest one and concatenated, then a
"bottleneck" that fuses the 4C channels into C, dropout 0.1 and a 1x1 classifier. HorFPN replaces only that
bottleneck with hornet.models.horfpn.GnConvFusion. Norms are BatchNorm (``trainer.sync_batchnorm`` makes them
SyncBN under DDP, as released).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

__all__ = ["FCNHead", "PyramidPooling", "SemanticFPNHead", "TopDownPyramid", "UPerHead"]


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly resized to ``like``'s spatial size (align_corners False, as mmseg)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PSP's pyramid pooling: average-pool to each of ``scales``, 1x1 conv to C, upsample back, concatenate with the
    input, and fuse by a 3x3 conv to C."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.pools = nn.ModuleList(ConvNormAct(in_channels, channels, 1) for _ in self.scales)
        self.fuse = ConvNormAct(in_channels + len(self.scales) * channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize_to(conv(F.adaptive_avg_pool2d(x, s)), x) for s, conv in zip(self.scales, self.pools)]
        return self.fuse(torch.cat([x, *pooled], dim=1))  # (B, in + len(scales) * C, H, W) -> (B, C, H, W)


class TopDownPyramid(nn.Module):
    """FPN's top-down pathway: 1x1 laterals to C, each level plus its coarser neighbour upsampled, a 3x3 conv per
    level. ``top`` replaces the coarsest level's lateral and output conv (UPerNet puts pyramid pooling there)."""

    def __init__(self, in_channels: Sequence[int], channels: int, *, top: nn.Module | None = None) -> None:
        super().__init__()
        levels = len(in_channels)
        below_top = levels - 1 if top is not None else levels
        self.laterals = nn.ModuleList(ConvNormAct(c, channels, 1) for c in in_channels[:below_top])
        self.outputs = nn.ModuleList(ConvNormAct(channels, channels, 3, padding=1) for _ in range(below_top))
        self.top = top

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.laterals, features)]
        if self.top is not None:
            laterals.append(self.top(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # coarse to fine
            laterals[i - 1] = laterals[i - 1] + resize_to(laterals[i], laterals[i - 1])
        outputs = [conv(x) for conv, x in zip(self.outputs, laterals)]
        return outputs + laterals[len(outputs) :]  # the top level passes as it is: (B, C, H_l, W_l) per level


class UPerHead(nn.Module):
    """UPerNet's decode head. ``fuse`` builds the bottleneck ``(in_channels, channels) -> module``; the default is
    the released 3x3 ConvNormAct, HorFPN passes a GnConvFusion."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        fuse: Callable[[int, int], nn.Module] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pyramid = TopDownPyramid(in_channels, channels, top=PyramidPooling(in_channels[-1], channels, pool_scales))
        concatenated = len(in_channels) * channels
        self.bottleneck = fuse(concatenated, channels) if fuse else ConvNormAct(concatenated, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = self.pyramid(features)
        fused = torch.cat([levels[0], *(resize_to(x, levels[0]) for x in levels[1:])], dim=1)  # (B, 4C, H0, W0)
        return self.classifier(self.dropout(self.bottleneck(fused)))  # (B, num_classes, H0, W0)


class SemanticFPNHead(nn.Module):
    """A lighter decoder (Kirillov et al.'s semantic FPN): the top-down pyramid, then per level 3x3 convs with 2x
    upsampling until the finest level's size, summed, and a 1x1 classifier."""

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, *, channels: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.pyramid = TopDownPyramid(in_channels, channels)
        self.scale_heads = nn.ModuleList(
            nn.Sequential(*(ConvNormAct(channels, channels, 3, padding=1) for _ in range(max(level, 1))))
            for level in range(len(in_channels))
        )  # level l (stride 2^l times the finest) gets max(l, 1) convs, each followed by a 2x upsampling but the last
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = self.pyramid(features)
        out = 0
        for level, (x, head) in enumerate(zip(levels, self.scale_heads)):
            for conv in head:
                x = conv(x)
                if level > 0:
                    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + resize_to(x, levels[0])  # (B, C, H0, W0)
        return self.classifier(self.dropout(out))


class FCNHead(nn.Module):
    """The auxiliary head on one level: 3x3 ConvNormAct to C, dropout, 1x1 classifier (mmseg's FCNHead with one
    conv and no input concatenation, as UPerNet's configs use it)."""

    def __init__(self, in_channels: int, num_classes: int, *, channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))  # (B, in, H, W) -> (B, num_classes, H, W)

"""HorFPN's fusion block: gnConv in place of the convolution that fuses features in a pyramid decoder.

As released (arXiv 2207.14284, segmentation and detection code): a 1x1 ``proj_in`` from the fused input to 2C, a
gnConv of order 2 whose spatial mixer is a depthwise 7x7 (HorFPN-7x7) or the Global-Local Filter (HorFPN-GF), the
mixer output not scaled (s = 1, where the backbone uses 1/3), ``proj_out`` to C. The segmentation decoder follows it
with a norm and ReLU; the detection FPN uses it bare.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hornet.ops import GnConv

__all__ = ["HORFPN_MIXERS", "GnConvFusion"]

HORFPN_MIXERS = {"horfpn_7x7": "dw7", "horfpn_gf": "gf"}  # the released variants and their spatial mixers


class GnConvFusion(nn.Module):
    """``in_channels -> channels`` by a gnConv block, optionally followed by BatchNorm and ReLU.

    Args:
        in_channels: channels of the fused input (4C for UPerNet's concatenated pyramid).
        channels: output channels C (gnConv's width; ``proj_in`` maps to 2C).
        order: gnConv's interaction order (2 as released).
        mixer: spatial mixer name (``dw7``, ``gf``, any ``dw<k>``; see hornet.ops.mixers).
        scale: gating scale s of the mixed features (1 as released in the necks).
        feature_size: (H, W) of the map the GF filter is sized for; other sizes resize it bilinearly.
        norm_act: BatchNorm + ReLU after gnConv (the segmentation decoder's bottleneck).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        order: int = 2,
        mixer: str = "dw7",
        scale: float = 1.0,
        feature_size: Sequence[int] | None = None,
        norm_act: bool = True,
    ) -> None:
        super().__init__()
        self.gnconv = GnConv(
            channels, order=order, mixer=mixer, scale=scale, feature_size=feature_size, in_channels=in_channels
        )
        self.norm = nn.BatchNorm2d(channels) if norm_act else nn.Identity()
        self.act = nn.ReLU(inplace=True) if norm_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.gnconv(x)))  # (B, in_channels, H, W) -> (B, channels, H, W)

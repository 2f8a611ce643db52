"""gnConv: the recursive gated convolution of HorNet (arXiv 2207.14284, Eq. 3-4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hornet.ops.mixers import create_mixer, depthwise_conv

__all__ = ["GnConv", "gnconv_dims"]


def gnconv_dims(dim: int, order: int) -> list[int]:
    """Channel widths of the recursion, ``[dim / 2^(n-1), ..., dim / 2, dim]``."""
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1; got {order!r}")
    if not isinstance(dim, int) or dim < 1 or dim % (2 ** (order - 1)):
        raise ValueError(
            f"dim must be a positive multiple of 2^(order-1) = {2 ** (order - 1)} for order {order}; got {dim!r}"
        )
    return [dim // 2**i for i in range(order)][::-1]


class GnConv(nn.Module):
    """Recursive gated convolution of order ``n``.

    ``p0, q = split(proj_in(x))``; ``q`` is mixed spatially (the injected mixer) and scaled by ``scale``, split by
    ``dims``; then ``p_{k+1} = pws[k](p_k) * q_{k+1}`` and the output is ``proj_out(p_{n-1})``. Order 1 is the
    plain gated convolution gConv.

    Args:
        dim: output channels (and input channels unless ``in_channels`` is given), divisible by ``2^(order-1)``.
        order: interaction order n >= 1.
        mixer: a mixer name (see :mod:`hornet.ops.mixers`) or a callable ``channels -> nn.Module``.
        scale: gating scale ``s`` applied to the mixed features (1/3 in every released model).
        feature_size: ``(H, W)`` of the stage's feature map, needed by the ``gf`` mixer.
        in_channels: input channels of ``proj_in`` when they differ from ``dim`` (HorFPN fuses 4C into C).
    """

    def __init__(
        self,
        dim: int,
        *,
        order: int = 5,
        mixer: str | Callable[[int], nn.Module] = "dw7",
        scale: float = 1.0,
        feature_size: Sequence[int] | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.dims = gnconv_dims(dim, order)
        self.order = order
        self.scale = float(scale)
        mixed_channels = sum(self.dims)
        self.proj_in = nn.Conv2d(in_channels or dim, 2 * dim, kernel_size=1)
        if isinstance(mixer, str):
            self.dwconv = create_mixer(mixer, mixed_channels, feature_size=feature_size)
        elif callable(mixer):
            self.dwconv = mixer(mixed_channels)
        else:
            raise ValueError(f"mixer must be a mixer name or a callable channels -> nn.Module; got {mixer!r}")
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], kernel_size=1) for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # proj_in as two convolutions over row blocks of its weight: each output is dense in x's memory format, so
        # the mixer gets a dense input (a channel slice of channels_last memory would be copied first).
        weight, bias = self.proj_in.weight, self.proj_in.bias
        assert bias is not None  # always built with a bias; narrows Optional for TorchScript
        d0 = self.dims[0]  # proj_in output: gate p0 | features to mix
        gate = F.conv2d(x, weight[:d0], bias[:d0])  # (B, d0, H, W)
        mixed = F.conv2d(x, weight[d0:], bias[d0:])  # (B, sum(d), H, W)
        mixed = self._mix_and_scale(mixed)
        gates = torch.split(mixed, self.dims, dim=1)  # n x (B, d_k, H, W)
        x = gate * gates[0]
        for k, pw in enumerate(self.pws):
            x = pw(x) * gates[k + 1]  # (B, d_{k+1}, H, W)
        return self.proj_out(x)

    def _mix_and_scale(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * mixer(x)``; a depthwise conv takes the scale in its weights (s*conv(x) = conv_{sW, sb}(x))."""
        mixer = self.dwconv
        if isinstance(mixer, nn.Conv2d):
            bias = mixer.bias
            if bias is not None:
                padding = [int(p) for p in mixer.padding]
                return depthwise_conv(x, mixer.weight * self.scale, bias * self.scale, padding)
        return mixer(x) * self.scale

    def extra_repr(self) -> str:
        return f"order={self.order}, dims={self.dims}, scale={self.scale:.4g}"

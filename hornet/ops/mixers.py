"""Spatial mixers for gnConv, chosen by name.

A mixer maps ``(B, C, H, W) -> (B, C, H, W)``. Names:

- ``dw{k}``: depthwise ``k x k`` convolution with bias, any odd ``k >= 1`` (``7x7`` is an alias of ``dw7``);
- ``gf``: the Global-Local Filter of HorNet-GF (half depthwise 3x3, half learnable global FFT filter).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, register_notrace_function, trunc_normal_
from torch import nn

__all__ = ["MIXER_NAMES_HELP", "GlobalLocalFilter", "create_mixer", "fft_filters", "filter_size_for", "parse_mixer"]

MIXER_NAMES_HELP = "'dw<k>' with odd k >= 1 (e.g. dw3, dw7, dw13, dw31), '7x7' (alias of dw7) or 'gf'"
_DEPTHWISE = re.compile(r"^dw(\d+)$")
_ALIASES = {"7x7": "dw7"}


def parse_mixer(name: str) -> tuple[str, int]:
    """Validate a mixer name; returns ``("dw", k)`` or ``("gf", 0)``."""
    if not isinstance(name, str):
        raise ValueError(f"mixer must be a string, one of {MIXER_NAMES_HELP}; got {name!r}")
    canonical = _ALIASES.get(name.lower(), name.lower())
    if canonical == "gf":
        return "gf", 0
    match = _DEPTHWISE.match(canonical)
    if match is None:
        raise ValueError(f"mixer {name!r} is unknown; allowed: {MIXER_NAMES_HELP}")
    kernel_size = int(match.group(1))
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"mixer {name!r}: kernel size must be odd and >= 1; allowed: {MIXER_NAMES_HELP}")
    return "dw", kernel_size


def filter_size_for(feature_size: Sequence[int]) -> tuple[int, int]:
    """rfft2 spectrum size ``(H, W // 2 + 1)`` of a ``(H, W)`` feature map: the GF filter's stored size."""
    height, width = feature_size
    return int(height), int(width) // 2 + 1


# Up to this many pixels a map is filtered by one dense circulant matrix per channel instead of FFTs: at 4x4 or 8x8
# the batched matmul costs less than thousands of tiny transforms (forward and backward), and computes the same.
DENSE_FILTER_MAX_PIXELS = 64


@contextmanager
def fft_filters(model: nn.Module):
    """Inside the block every GF mixer of ``model`` filters through the FFT, as the paper describes (and counts) it:
    complexity counting uses this, so MACs do not depend on which implementation a map size gets."""
    filters = [m for m in model.modules() if isinstance(m, GlobalLocalFilter)]
    saved = [m.dense_max_pixels for m in filters]
    for m in filters:
        m.dense_max_pixels = 0
    try:
        yield
    finally:
        for m, value in zip(filters, saved):
            m.dense_max_pixels = value


def resize_filter(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A GF filter (C, h, w, 2), the real view of a complex spectrum, resized to (C, size[0], size[1], 2) bilinearly
    with align_corners=True, as released; unchanged when it has that size."""
    if weight.shape[1] == size[0] and weight.shape[2] == size[1]:
        return weight
    resized = F.interpolate(weight.permute(3, 0, 1, 2), size=size, mode="bilinear", align_corners=True)  # (2, C, h, w)
    return resized.permute(1, 2, 3, 0)  # (C, H, W//2+1, 2)


def _filter_spectrum(x: torch.Tensor, weight: torch.Tensor, dense_max_pixels: int) -> torch.Tensor:
    height, width = x.shape[-2], x.shape[-1]
    freq_height, freq_width = height, width // 2 + 1  # the spectrum's size (filter_size_for; TorchScript-compiled here)
    weight = resize_filter(weight, (freq_height, freq_width)).float()
    complex_weight = torch.complex(weight[..., 0], weight[..., 1])  # (C, H, W//2+1); never view_as_complex
    if height * width <= dense_max_pixels:
        return _circular_filter(x.float(), complex_weight)
    spectrum = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")  # (B, C, H, W//2+1) complex64
    spectrum = spectrum * complex_weight
    return torch.fft.irfft2(spectrum, s=(height, width), dim=(2, 3), norm="ortho")  # (B, C, H, W) fp32


def _circular_filter(x: torch.Tensor, complex_weight: torch.Tensor) -> torch.Tensor:
    """The global filter in the pixel domain: ``irfft2(rfft2(x, ortho) * W, ortho)`` is the circular convolution of x
    with ``k = irfft2(W)`` (the two ortho scalings cancel), applied as a (H*W, H*W) circulant matrix per channel."""
    batch, channels, height, width = x.shape
    kernel = torch.fft.irfft2(complex_weight, s=(height, width), dim=(1, 2))  # (C, H, W)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    shift_rows = (rows[:, None] - rows[None, :]) % height  # (H_out, H_in)
    shift_cols = (cols[:, None] - cols[None, :]) % width  # (W_out, W_in)
    # tap[q, p]: the kernel entry linking input pixel p = (ph, pw) to output pixel q = (qh, qw)
    tap = shift_rows[:, None, :, None] * width + shift_cols[None, :, None, :]  # (H_out, W_out, H_in, W_in)
    matrix = kernel.reshape(channels, height * width)[:, tap.reshape(height * width, height * width)]  # (C, HW, HW)
    pixels = x.permute(1, 0, 2, 3).reshape(channels, batch, height * width)  # (C, B, HW), one copy
    out = torch.bmm(pixels, matrix.transpose(1, 2))  # (C, B, HW_out): out[c, b, q] = sum_p matrix[c, q, p] x[b, c, p]
    return out.view(channels, batch, height, width).permute(1, 0, 2, 3)  # (B, C, H, W), a view


@register_notrace_function  # an FX leaf: the size check and the autocast context are not traceable
def global_filter(
    x: torch.Tensor, weight: torch.Tensor, dense_max_pixels: int = DENSE_FILTER_MAX_PIXELS
) -> torch.Tensor:
    """Multiply ``x`` (B, C, H, W) by a learnable filter in the 2-D Fourier domain, in fp32 with autocast off.

    ``weight`` is the real view (C, h, w, 2) of a complex filter; it is resized bilinearly (align_corners=True,
    as released) only when the spectrum of ``x`` is not (h, w). Returns fp32 (B, C, H, W).
    """
    if not torch.jit.is_scripting():
        if torch.amp.is_autocast_available(x.device.type):  # not on the meta device
            # cuFFT in half precision only takes power-of-two sizes: keep autocast away from the FFT.
            with torch.autocast(device_type=x.device.type, enabled=False):
                return _filter_spectrum(x, weight, dense_max_pixels)
    return _filter_spectrum(x, weight, dense_max_pixels)


class GlobalLocalFilter(nn.Module):
    """HorNet's GF mixer: pre-norm, half the channels through a depthwise 3x3, half through a global FFT filter,
    the halves interleaved channel by channel, post-norm.

    Args:
        channels: number of channels (even).
        feature_size: ``(H, W)`` of the feature map the filter is sized for; other sizes resize it on the fly.
    """

    def __init__(self, channels: int, *, feature_size: Sequence[int]) -> None:
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be even and >= 2 for the 'gf' mixer; got {channels}")
        if len(feature_size) != 2 or min(feature_size) < 1:
            raise ValueError(f"feature_size must be (H, W) with positive sizes; got {tuple(feature_size)}")
        half = channels // 2
        self.channels = channels
        self.pre_norm = LayerNorm2d(channels, eps=1e-6)
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, bias=False, groups=half)
        height, freq_width = filter_size_for(feature_size)
        # Stored as real/imag pairs so the parameter stays a plain fp32 tensor under any strategy.
        self.complex_weight = nn.Parameter(torch.empty(half, height, freq_width, 2, dtype=torch.float32))
        trunc_normal_(self.complex_weight, std=0.02)
        self.post_norm = LayerNorm2d(channels, eps=1e-6)
        self.dense_max_pixels = DENSE_FILTER_MAX_PIXELS  # maps up to this size filter as a matrix (see fft_filters)

    def _apply(self, fn, recurse: bool = True):
        """Casts to half precision (``.half()``, Lightning's "bf16-true", DeepSpeed fp16) leave the filter fp32: it is
        small, the FFT runs in fp32 anyway, and a half-precision filter would lose what it learns."""
        super()._apply(fn, recurse)
        weight = self.complex_weight
        if weight.dtype in (torch.float16, torch.bfloat16):
            weight.data = weight.data.float()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        batch, channels, height, width = x.shape
        local, global_ = torch.chunk(x, 2, dim=1)  # 2 x (B, C/2, H, W), views
        local = self.dw(local)
        global_ = global_filter(global_, self.complex_weight, self.dense_max_pixels).to(local.dtype)
        # Interleave channel by channel as released (out[:, 0::2] = local, out[:, 1::2] = global), built channels-last
        # so that the single copy (the stack) leaves the post-norm a dense (B, H, W, C) input.
        x = torch.stack((local.permute(0, 2, 3, 1), global_.permute(0, 2, 3, 1)), dim=-1)  # (B, H, W, C/2, 2)
        x = x.reshape(batch, height, width, channels)  # (B, H, W, C), a view
        norm = self.post_norm
        x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W) in channels_last memory

    def extra_repr(self) -> str:
        half, height, freq_width, _ = self.complex_weight.shape
        return f"channels={self.channels}, filter=({half}, {height}, {freq_width}) complex"


def create_mixer(name: str, channels: int, *, feature_size: Sequence[int] | None = None) -> nn.Module:
    """Build the mixer ``name`` for ``channels`` channels; ``gf`` needs the stage's ``feature_size`` (H, W)."""
    kind, kernel_size = parse_mixer(name)
    if kind == "gf":
        if feature_size is None:
            raise ValueError("mixer 'gf' needs feature_size=(H, W), the stage's feature-map size")
        return GlobalLocalFilter(channels, feature_size=feature_size)
    return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=True)

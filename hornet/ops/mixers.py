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

from hornet.ops.real_dft import irdft2, rdft2

__all__ = [
    "FILTER_PATHS",
    "MIXER_NAMES_HELP",
    "GlobalLocalFilter",
    "create_mixer",
    "depthwise_conv",
    "fft_filters",
    "filter_path",
    "filter_size_for",
    "parse_mixer",
]

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


FILTER_PATHS = ("auto", "dense", "dft", "fft")
# How a GF filters an (H, W) map: one circulant matrix per channel ("dense"), the real DFT as matmuls ("dft"), the FFT,
# or "auto": by map size and device (filter_path), from `hornet bench MODEL --filter-paths` (docs/speed.md).


def filter_path(height: int, width: int, device_type: str) -> str:
    """The fastest measured implementation of the GF filter for an (H, W) map on ``device_type``; all compute the
    same map (tested to 1e-10 in float64). Up to 64 pixels (the 32 px models' 4x4 and 2x2 maps) one circulant matrix
    per channel beats thousands of tiny FFTs on a CPU (CUDA takes the same until measured there). No device has
    measured "dft" faster than the FFT past that yet (CPU, 2026-12-05: 14x14 won once and lost once, 28x28 lost; CUDA
    not measured): it serves compiled models, whose graphs it keeps real-valued. ``device_type`` is where a device's
    own measurement goes; literal numbers, because TorchScript compiles this."""
    if height * width <= 64:
        return "dense"
    return "fft"


@contextmanager
def fft_filters(model: nn.Module):
    """Inside the block every GF mixer of ``model`` filters through the FFT, as the paper describes (and counts) it:
    complexity counting uses this, so MACs do not depend on which implementation a map size gets."""
    filters = [m for m in model.modules() if isinstance(m, GlobalLocalFilter)]
    saved = [m.filter_path for m in filters]
    for m in filters:
        m.filter_path = "fft"
    try:
        yield
    finally:
        for m, value in zip(filters, saved):
            m.filter_path = value


def resize_filter(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A GF filter (C, h, w, 2), the real view of a complex spectrum, resized to (C, size[0], size[1], 2) bilinearly
    with align_corners=True, as released; unchanged when it has that size."""
    if weight.shape[1] == size[0] and weight.shape[2] == size[1]:
        return weight
    resized = F.interpolate(weight.permute(3, 0, 1, 2), size=size, mode="bilinear", align_corners=True)  # (2, C, h, w)
    return resized.permute(1, 2, 3, 0)  # (C, H, W//2+1, 2)


def _filter_spectrum(x: torch.Tensor, weight: torch.Tensor, path: str) -> torch.Tensor:
    height, width = x.shape[-2], x.shape[-1]
    freq_height, freq_width = height, width // 2 + 1  # the spectrum's size (filter_size_for; TorchScript-compiled here)
    x, weight = _fp32_or_wider(x), _fp32_or_wider(resize_filter(weight, (freq_height, freq_width)))
    real_weight, imag_weight = weight[..., 0], weight[..., 1]  # 2 x (C, H, W//2+1)
    if path == "auto":
        path = filter_path(height, width, x.device.type)
    if path == "dense":
        return _circular_filter(x, real_weight, imag_weight)
    if path == "dft":  # real tensors only: compiles, and beats the FFT's launches on small maps
        real, imag = rdft2(x)  # 2 x (B, C, H, W//2+1)
        filtered_real = real * real_weight - imag * imag_weight  # (a + ib)(c + id), per channel and frequency
        filtered_imag = real * imag_weight + imag * real_weight
        return irdft2(filtered_real, filtered_imag, (height, width))  # (B, C, H, W) fp32
    if path != "fft":
        raise ValueError("GF filter path must be 'auto', 'dense', 'dft' or 'fft'; got " + path)
    complex_weight = torch.complex(real_weight, imag_weight)  # (C, H, W//2+1); never view_as_complex
    spectrum = torch.fft.rfft2(x, dim=(2, 3), norm="ortho")  # (B, C, H, W//2+1) complex64
    spectrum = spectrum * complex_weight
    return torch.fft.irfft2(spectrum, s=(height, width), dim=(2, 3), norm="ortho")  # (B, C, H, W) fp32


def _fp32_or_wider(tensor: torch.Tensor) -> torch.Tensor:
    """Half precision up to fp32 (the filter's precision); float64 stays (the tests' exact comparisons)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def _circular_filter(x: torch.Tensor, real_weight: torch.Tensor, imag_weight: torch.Tensor) -> torch.Tensor:
    """The global filter in the pixel domain: ``irfft2(rfft2(x, ortho) * W, ortho)`` is the circular convolution of x
    with ``k = irfft2(W)`` (the two ortho scalings cancel), applied as a (H*W, H*W) circulant matrix per channel."""
    batch, channels, height, width = x.shape
    kernel = irdft2(real_weight, imag_weight, (height, width), norm="backward")  # (C, H, W)
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
def global_filter(x: torch.Tensor, weight: torch.Tensor, path: str = "auto") -> torch.Tensor:
    """Multiply ``x`` (B, C, H, W) by a learnable filter in the 2-D Fourier domain, in fp32 with autocast off.

    ``weight`` is the real view (C, h, w, 2) of a complex filter; it is resized bilinearly (align_corners=True,
    as released) only when the spectrum of ``x`` is not (h, w). ``path``: one of FILTER_PATHS ("auto": by map size
    and device, ``filter_path``). Returns fp32 (B, C, H, W).
    """
    if not torch.jit.is_scripting():
        if path == "auto" and torch.compiler.is_compiling():  # compiled graphs stay real-valued: no FFT inside
            path = filter_path(x.shape[-2], x.shape[-1], x.device.type)
            path = "dft" if path == "fft" else path
        if torch.amp.is_autocast_available(x.device.type):  # not on the meta device
            # cuFFT in half precision only takes power-of-two sizes: keep autocast away from the FFT.
            with torch.autocast(device_type=x.device.type, enabled=False):
                return _filter_spectrum(x, weight, path)
    return _filter_spectrum(x, weight, path)


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
        self.filter_path = "auto"  # by map size and device (filter_path); fft_filters sets "fft"

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
        local = depthwise_conv(local, self.dw.weight, None, [1, 1])
        global_ = global_filter(global_, self.complex_weight, self.filter_path).to(local.dtype)
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


def depthwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: list[int]
) -> torch.Tensor:
    """A depthwise convolution (weight (C, 1, k, k)), its bias added after it (oneDNN's depthwise backward is ~20%
    slower when it also reduces the bias). Under CPU autocast it computes in fp32 and returns autocast's dtype: there
    oneDNN's bf16 depthwise convolution, forward and backward, is 2-3x slower than its fp32 one (channels-last, 7x7,
    batch 16 on an AMX Xeon: 106 vs 32 ms at (96, 56x56), 36 vs 18 ms at (992, 7x7)), which costs two casts."""
    if not torch.jit.is_scripting():  # its own line: TorchScript skips only this exact form
        if torch.is_autocast_enabled("cpu") and x.device.type == "cpu":
            dtype = torch.get_autocast_dtype("cpu")
            with torch.autocast("cpu", enabled=False):
                return _depthwise(x.float(), weight.float(), None if bias is None else bias.float(), padding).to(dtype)
    return _depthwise(x, weight, bias, padding)


def _depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: list[int]) -> torch.Tensor:
    out = F.conv2d(x, weight, None, padding=padding, groups=weight.shape[0])
    if bias is None:
        return out
    return out.add_(bias.view(-1, 1, 1))  # (B, C, H, W) + (C, 1, 1)


def create_mixer(name: str, channels: int, *, feature_size: Sequence[int] | None = None) -> nn.Module:
    """Build the mixer ``name`` for ``channels`` channels; ``gf`` needs the stage's ``feature_size`` (H, W)."""
    kind, kernel_size = parse_mixer(name)
    if kind == "gf":
        if feature_size is None:
            raise ValueError("mixer 'gf' needs feature_size=(H, W), the stage's feature-map size")
        return GlobalLocalFilter(channels, feature_size=feature_size)
    return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=True)

"""The 2-D real DFT (``torch.fft.rfft2`` / ``irfft2``) as matmuls with fixed cosine and sine matrices.

Real tensors only: torch.compile fuses it, autocast and half precision meet no cuFFT size rule, and on small maps a few
matmuls beat the FFT's launches. A spectrum is a pair (real, imag) of (..., H, W // 2 + 1) tensors, ordered as
``rfft2``'s. Exact in float64 (the angles are reduced modulo the size before the cosine).
"""

from __future__ import annotations

import math

import torch

__all__ = ["irdft2", "rdft2"]


def _angles(size: int, frequencies: int, device: torch.device) -> torch.Tensor:
    """2 pi (k n mod size) / size as a (size, frequencies) float64 table: row n (position), column k (frequency)."""
    n = torch.arange(size, device=device, dtype=torch.float64)
    k = torch.arange(frequencies, device=device, dtype=torch.float64)
    return (2 * math.pi / size) * torch.remainder(n[:, None] * k[None, :], size)


def _row_transform(height: int, inverse: bool, like: torch.Tensor) -> torch.Tensor:
    """The complex DFT along H as one real (2H, 2H) matrix acting on [real; imag] stacked along H:
    forward [[C, S], [-S, C]] (e^{-i theta}), inverse [[C, -S], [S, C]] (e^{+i theta})."""
    angles = _angles(height, height, like.device)  # symmetric: (h, u) == (u, h)
    cos, sin = torch.cos(angles), torch.sin(angles)
    sign = -1.0 if inverse else 1.0
    top = torch.cat((cos, sign * sin), dim=1)  # (H, 2H)
    bottom = torch.cat((-sign * sin, cos), dim=1)  # (H, 2H)
    return torch.cat((top, bottom), dim=0).to(like.dtype)  # (2H, 2H)


def rdft2(x: torch.Tensor, norm: str = "ortho") -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.rfft2(x, dim=(-2, -1), norm=norm)`` as (real, imag), each (..., H, W // 2 + 1)."""
    height, width = x.shape[-2], x.shape[-1]
    freq_width = width // 2 + 1
    angles = _angles(width, freq_width, x.device)  # (W, W//2+1)
    columns = torch.cat((torch.cos(angles), -torch.sin(angles)), dim=1).to(x.dtype)  # (W, 2 (W//2+1)): e^{-i theta}
    half = x @ columns  # (..., H, 2 (W//2+1)): [real | imag] along W
    stacked = torch.cat((half[..., :freq_width], half[..., freq_width:]), dim=-2)  # (..., 2H, W//2+1): [real; imag]
    spectrum = _row_transform(height, False, x) @ stacked  # (..., 2H, W//2+1)
    scale = _scale(height * width, norm, inverse=False)
    return spectrum[..., :height, :] * scale, spectrum[..., height:, :] * scale  # 2 x (..., H, W//2+1)


def irdft2(real: torch.Tensor, imag: torch.Tensor, size: tuple[int, int], norm: str = "ortho") -> torch.Tensor:
    """``torch.fft.irfft2(torch.complex(real, imag), s=size, dim=(-2, -1), norm=norm)``: (..., H, W) from the
    (..., H, W // 2 + 1) half spectrum; the imaginary parts of the zero and Nyquist columns are ignored, as there."""
    height, width = size
    freq_width = width // 2 + 1
    stacked = torch.cat((real, imag), dim=-2)  # (..., 2H, W//2+1)
    rows = _row_transform(height, True, real) @ stacked  # (..., 2H, W//2+1): inverse along H, [real; imag]
    angles = _angles(width, freq_width, real.device).T  # (W//2+1, W)
    # the mirrored half of the spectrum counts twice
    weights = torch.full((freq_width, 1), 2.0, dtype=torch.float64, device=real.device)
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0  # the Nyquist column has no mirror
    cos = (weights * torch.cos(angles)).to(real.dtype)  # (W//2+1, W)
    sin = (weights * torch.sin(angles)).to(real.dtype)
    out = rows[..., :height, :] @ cos - rows[..., height:, :] @ sin  # (..., H, W): Re(sum_k B_k e^{+i theta})
    return out * _scale(height * width, norm, inverse=True)


def _scale(pixels: int, norm: str, *, inverse: bool) -> float:
    if norm == "ortho":
        return pixels**-0.5
    if norm == "backward":
        return 1.0 / pixels if inverse else 1.0
    if norm == "forward":
        return 1.0 if inverse else 1.0 / pixels
    raise ValueError("norm must be 'ortho', 'backward' or 'forward'; got " + norm)

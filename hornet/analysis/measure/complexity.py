"""Parameters and MACs of any timm model: torch.utils.flop_counter plus formulas for the ops it lacks (FFT).

Two conventions, both reported in multiply-accumulates per image (one multiply-add = one FLOP, as the paper):

- ``torch`` (default): convolution and linear MACs (flop_counter / 2), plus each 2-D real FFT counted as
  ``C * N * ceil(log2 N)`` for an ``N = H * W`` signal per channel (the paper's N log N intent).
- ``fvcore``: the paper's own counting tool as the released code used it: convolution and linear MACs, every
  channels-last LayerNorm at 5 per element (channels-first norms were hand-written there and not counted), and each
  rfft2 / irfft2 through the released handler, which reads a channels-first (B, C, H, W) input as (B, H, W, C):
  ``N = C * H``, cost ``N * W * ceil(log2 N)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from timm.layers import LayerNorm2d, to_2tuple
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hornet.models.variants import create_model, input_size_kwargs
from hornet.ops.mixers import fft_filters

__all__ = ["CONVENTIONS", "Complexity", "count_complexity", "profile_model"]

CONVENTIONS = ("torch", "fvcore")
_FFT_OPS = (torch.ops.aten._fft_r2c, torch.ops.aten._fft_c2r)  # flop_counter keys by overload packet


@dataclass(frozen=True)
class Complexity:
    """Parameter count and MACs per image of one model at one input size."""

    name: str
    img_size: tuple[int, int]
    params: int
    macs: float
    convention: str
    parts: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (params, MACs) of a submodule

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _fft_cost(convention: str):
    """FLOP formula for aten._fft_r2c / _fft_c2r in flop_counter's units (2 x MACs)."""

    def formula(input_shape, *args, out_shape=None, **kwargs) -> int:
        batch, channels, height, width = input_shape  # r2c: real (B, C, H, W); c2r: complex (B, C, H, W//2+1)
        if convention == "fvcore":
            # The released handler unpacks (B, C, H, W) as (B, H, W, C): N = C * H, times W * ceil(log2 N).
            signal = channels * height
            macs = signal * width * math.ceil(math.log2(signal))
        else:
            real_width = out_shape[-1] if input_shape[-1] != out_shape[-1] else width  # c2r restores W
            signal = height * (real_width if out_shape is not None else width)
            macs = batch * channels * signal * math.ceil(math.log2(max(signal, 2)))
        return 2 * macs

    return formula


def _channels_last_norm_hooks(model: nn.Module, counter: list[int]) -> list:
    """Count 5 FLOPs per element of every channels-last LayerNorm (fvcore's rule), skipping channels-first ones."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        counter[0] += 5 * inputs[0].numel()

    return [
        module.register_forward_hook(hook)
        for module in model.modules()
        if isinstance(module, nn.LayerNorm) and not isinstance(module, LayerNorm2d)
    ]


def count_complexity(
    model: nn.Module,
    img_size: int | tuple[int, int],
    *,
    in_chans: int = 3,
    convention: str = "torch",
    name: str = "",
    parts: Mapping[str, str] | None = None,
) -> Complexity:
    """Params and MACs of ``model`` for one ``in_chans x img_size`` image (works on the meta device too).

    ``parts`` names submodules to count on their own in the same pass, as ``{label: submodule path}`` (e.g.
    ``{"decoder": "decode_head"}``): their MACs are those spent inside them while ``model`` runs."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    img_size = to_2tuple(img_size)
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, *img_size, device=device)
    fft = _fft_cost(convention)
    norm_flops = [0]
    hooks = _channels_last_norm_hooks(model, norm_flops) if convention == "fvcore" else []
    was_training = model.training
    model.eval()
    try:
        with (
            torch.no_grad(),
            fft_filters(model),  # the GF as the paper counts it, whichever implementation runs at this map size
            FlopCounterMode(display=False, custom_mapping={op: fft for op in _FFT_OPS}) as counter,
        ):
            model(x)
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    macs = counter.get_total_flops() / 2 + norm_flops[0]
    flops = counter.get_flop_counts()  # "<root class>.<submodule path>" -> {op: FLOPs}
    counted = {}
    for label, path in (parts or {}).items():
        module = model.get_submodule(path)  # raises AttributeError naming a missing path
        part_flops = sum(flops.get(f"{type(model).__name__}.{path}", {}).values())
        counted[label] = (sum(p.numel() for p in module.parameters()), part_flops / 2)
    return Complexity(name or type(model).__name__, img_size, params, macs, convention, counted)


def profile_model(name: str, *, img_size: int | None = None, convention: str = "torch", **model_kwargs) -> Complexity:
    """Build the timm model ``name`` on the meta device (no memory, no init) and count its complexity."""
    kwargs = {**model_kwargs, **input_size_kwargs(name, img_size)}  # GF filters follow the input size
    model = create_model(name, device="meta", **kwargs)
    size = img_size or model.pretrained_cfg["input_size"][-1]
    in_chans = kwargs.get("in_chans", model.pretrained_cfg["input_size"][0])
    return count_complexity(model, size, in_chans=in_chans, convention=convention, name=name)

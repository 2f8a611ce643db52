"""The HorNet variant table and its timm registration.

Every architecture is one row of ``VARIANTS`` (data); each has a ``@register_model`` function of its name that builds
its row, so ``timm.create_model("hornet_tiny_gf")`` works like any timm model once ``hornet`` is imported. Released
checkpoints load offline with ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``
(add ``weights="ema"`` to the overlay for the EMA weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from hornet.models.convert import checkpoint_filter_fn, local_weights_overlay
from hornet.models.hornet import HorNet, stage_feature_sizes
from hornet.models.reference import ReferenceHorNet

__all__ = [
    "REFERENCE_MODELS",
    "VARIANTS",
    "Variant",
    "check_model_name",
    "create_hornet",
    "create_model",
    "input_size_kwargs",
]

DW7 = ("dw7", "dw7", "dw7", "dw7")
GF = ("dw7", "dw7", "gf", "gf")  # GF in stages 3-4, as released
RELEASED_DEPTHS = (2, 3, 18, 2)
STEM = "downsample_layers.0.0"  # the first convolution (timm's first_conv)
STEM_WEIGHT = f"{STEM}.weight"


@dataclass(frozen=True)
class Variant:
    """One registered architecture: constructor arguments plus its default (pretrained) cfg."""

    base_dim: int
    depths: tuple[int, ...]
    mixers: tuple[str, ...]
    orders: tuple[int, ...] = (2, 3, 4, 5)
    img_size: int = 224
    stem_stride: int = 4
    crop_pct: float = 0.875
    released: bool = True
    description: str = ""
    extra: dict = field(default_factory=dict)

    def model_args(self) -> dict:
        return dict(
            base_dim=self.base_dim,
            depths=self.depths,
            orders=self.orders,
            mixers=self.mixers,
            img_size=self.img_size,
            stem_stride=self.stem_stride,
        )

    def default_cfg(self) -> dict:
        height, width = stage_feature_sizes(self.img_size, self.stem_stride)[-1]
        return dict(
            url="",
            num_classes=1000,
            input_size=(3, self.img_size, self.img_size),
            pool_size=(height, width),
            crop_pct=self.crop_pct,
            interpolation="bicubic",
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            first_conv=STEM,
            classifier="head",
            license="mit",
            paper_ids="arXiv:2207.14284",
            paper_name="HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
            origin_url="https://github.com/raoyongming/HorNet",
            description=self.description,
        )


def _released(base_dim: int, mixers: tuple[str, ...], img_size: int = 224) -> Variant:
    return Variant(base_dim, RELEASED_DEPTHS, mixers, img_size=img_size, crop_pct=1.0 if img_size > 224 else 0.875)


# The CPU sizes, shared with the placement hosts of the same name (hornet.models.placement): width and depth.
CPU_SIZES = {"micro": dict(base_dim=16, depths=(1, 1, 2, 1)), "nano": dict(base_dim=32, depths=(2, 2, 6, 2))}


def _small(size: str, mixers: tuple[str, ...], description: str) -> Variant:
    return Variant(
        **CPU_SIZES[size], mixers=mixers, img_size=32, stem_stride=2, crop_pct=1.0, released=False,
        description=description,
    )  # fmt: skip


VARIANTS: dict[str, Variant] = {
    "hornet_tiny_7x7": _released(64, DW7),
    "hornet_tiny_gf": _released(64, GF),
    "hornet_small_7x7": _released(96, DW7),
    "hornet_small_gf": _released(96, GF),
    "hornet_base_7x7": _released(128, DW7),
    "hornet_base_gf": _released(128, GF),
    "hornet_base_gf_img384": _released(128, GF, img_size=384),
    "hornet_large_7x7": _released(192, DW7),
    "hornet_large_gf": _released(192, GF),
    "hornet_large_gf_img384": _released(192, GF, img_size=384),
    # CPU-sized variants for 28-64 px data: stride-2 stem, stage maps 16/8/4/2 at 32 px.
    "hornet_micro_7x7": _small("micro", DW7, "CPU-sized HorNet for 28-64 px images (smoke tests)"),
    "hornet_micro_gf": _small("micro", GF, "CPU-sized HorNet-GF for 28-64 px images (smoke tests)"),
    "hornet_nano_7x7": _small("nano", DW7, "CPU-sized HorNet for 28-64 px images (ablations)"),
    "hornet_nano_gf": _small("nano", GF, "CPU-sized HorNet-GF for 28-64 px images (ablations)"),
}

default_cfgs = generate_default_cfgs({name: variant.default_cfg() for name, variant in VARIANTS.items()})

# Each variant also has a plain transcription of the released code (same keys, same function), ``<name>_reference``:
# built by ``create_model`` for benchmarks and equality tests, but not registered in timm, whose model list and
# model-suite tests are for the real models.
REFERENCE_SUFFIX = "_reference"
REFERENCE_MODELS = tuple(name + REFERENCE_SUFFIX for name in VARIANTS)


def create_hornet(name: str, pretrained: bool = False, **kwargs) -> HorNet:
    """Build the variant ``name`` (or its ``_reference`` twin) through timm's builder; kwargs override the table's
    constructor arguments."""
    reference = name.endswith(REFERENCE_SUFFIX)
    name = name.removesuffix(REFERENCE_SUFFIX)
    variant, model_cls = VARIANTS[name], ReferenceHorNet if reference else HorNet
    overlay = local_weights_overlay(pretrained, kwargs.pop("pretrained_cfg_overlay", None))
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    model_args = {**variant.model_args(), **kwargs}
    stem = (overlay.get("state_dict") or {}).get(STEM_WEIGHT)
    if "img_size" in kwargs or "stem_stride" in kwargs or stem is not None:
        height, width = to_2tuple(model_args["img_size"])
        # the channels the weights were trained on (a hornet fit checkpoint of 1-channel data): timm adapts the stem
        # from these, and says nothing when they are the model's
        overlay.setdefault("input_size", (stem.shape[1] if stem is not None else 3, height, width))
        overlay.setdefault("pool_size", stage_feature_sizes((height, width), model_args["stem_stride"])[-1])
    with torch.device(device or "cpu"):
        model = build_model_with_cfg(
            model_cls,
            name,
            pretrained,
            pretrained_cfg_overlay=overlay or None,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
            **model_args,
        )
    if dtype is not None:
        model = model.to(dtype)
    model.pretrained_cfg["state_dict"] = None  # the weights are in the model now; do not keep a second copy
    return model


def create_model(name: str, **kwargs) -> nn.Module:
    """``timm.create_model``, and also the ``<variant>_reference`` transcriptions that timm does not list."""
    import timm

    if name in REFERENCE_MODELS:
        return create_hornet(name, **kwargs)
    return timm.create_model(name, **kwargs)


def check_model_name(name: str, *, key: str = "model") -> None:
    """Raise a ValueError for a name timm does not know, suggesting close matches."""
    import difflib

    import timm

    known = timm.list_models()
    if name not in known and name not in REFERENCE_MODELS:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ValueError(f"{key}: unknown model {name!r}{hint}")


def input_size_kwargs(name: str, img_size: int | None) -> dict:
    """The keyword a timm model ``name`` is built with for ``img_size`` inputs: ``{"img_size": img_size}`` for
    hornet's models (GF filters, Swin windows) and timm's with a fixed input size (Swin windows, ViT position
    embeddings); ``{}`` for the others, which take any size (and for ``img_size`` None)."""
    import timm

    if img_size is None:
        return {}
    sized = name in REFERENCE_MODELS or timm.models.model_entrypoint(name).__module__.startswith("hornet.")
    return {"img_size": img_size} if sized or timm.models.get_pretrained_cfg_value(name, "fixed_input_size") else {}


# --- timm entry points: one function per model, each building its row of VARIANTS -------------------------------
@register_model
def hornet_tiny_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T 7x7 depthwise, as released."""
    return create_hornet("hornet_tiny_7x7", pretrained, **kwargs)


@register_model
def hornet_tiny_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T GF (Global-Local Filter in stages 3-4), as released."""
    return create_hornet("hornet_tiny_gf", pretrained, **kwargs)


@register_model
def hornet_small_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S 7x7 depthwise, as released."""
    return create_hornet("hornet_small_7x7", pretrained, **kwargs)


@register_model
def hornet_small_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S GF (Global-Local Filter in stages 3-4), as released."""
    return create_hornet("hornet_small_gf", pretrained, **kwargs)


@register_model
def hornet_base_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-B 7x7 depthwise, as released."""
    return create_hornet("hornet_base_7x7", pretrained, **kwargs)


@register_model
def hornet_base_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-B GF (Global-Local Filter in stages 3-4), as released."""
    return create_hornet("hornet_base_gf", pretrained, **kwargs)


@register_model
def hornet_base_gf_img384(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-B GF (Global-Local Filter in stages 3-4) at 384 px, as released."""
    return create_hornet("hornet_base_gf_img384", pretrained, **kwargs)


@register_model
def hornet_large_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-L 7x7 depthwise, as released."""
    return create_hornet("hornet_large_7x7", pretrained, **kwargs)


@register_model
def hornet_large_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-L GF (Global-Local Filter in stages 3-4), as released."""
    return create_hornet("hornet_large_gf", pretrained, **kwargs)


@register_model
def hornet_large_gf_img384(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-L GF (Global-Local Filter in stages 3-4) at 384 px, as released."""
    return create_hornet("hornet_large_gf_img384", pretrained, **kwargs)


@register_model
def hornet_micro_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-Micro 7x7 depthwise: CPU-sized, for 28-64 px images (not released)."""
    return create_hornet("hornet_micro_7x7", pretrained, **kwargs)


@register_model
def hornet_micro_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-Micro GF (Global-Local Filter in stages 3-4): CPU-sized, for 28-64 px images (not released)."""
    return create_hornet("hornet_micro_gf", pretrained, **kwargs)


@register_model
def hornet_nano_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-Nano 7x7 depthwise: CPU-sized, for 28-64 px images (not released)."""
    return create_hornet("hornet_nano_7x7", pretrained, **kwargs)


@register_model
def hornet_nano_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-Nano GF (Global-Local Filter in stages 3-4): CPU-sized, for 28-64 px images (not released)."""
    return create_hornet("hornet_nano_gf", pretrained, **kwargs)

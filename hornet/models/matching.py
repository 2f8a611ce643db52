"""FLOPs-matched gnConv arms: gnConv hosts whose MACs are within 5% of their plain baselines.

Swapping gnConv in at the same width and depth changes a model's cost (convnext_micro_gnconv has 41% more MACs than
convnext_micro_plain; an isotropic ViT with gnConv has 10% fewer than with attention), so a same-shape comparison
cannot tell a better mixer from a bigger model. The authors, comparing gnConv inside Swin and ConvNeXt, changed the
number of blocks until the costs matched. ``hornet.analysis.measure.matching.match_macs`` does that, trying the
settings of ``matched_candidates`` in order and keeping the first within 5%: depth changes first (the third stage of a
hierarchical model, the only one with more than one block at the micro size; the whole stack of an isotropic one)
at the arm's own width, and the width only when no depth alone lands within the tolerance, then by as few steps as
possible, each with the least change of depth.

At the micro size no depth alone matches (the third stage's depth moves MACs in steps of about 30%, an isotropic
block is a quarter of the stack), so the width moves too; at DeiT-S's size one more block does it.
``MATCHED`` states what the search found as data (a test re-derives every entry); each is registered in timm as
``<arm>_matched``, so suites and `hornet profile --matched` use them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from timm.models import generate_default_cfgs, get_pretrained_cfg, register_model
from torch import nn

from hornet.models.isotropic import SIZES as ISOTROPIC_SIZES  # (importing them registers the arms first)
from hornet.models.placement import SIZES as PLACEMENT_SIZES

__all__ = ["MATCHED", "MatchedArm", "matched_candidates"]

TOLERANCE = 0.05  # a matched arm's MACs are within 5% of its baseline's


@dataclass(frozen=True)
class MatchedArm:
    """``arm`` (a same-shape gnConv model) rebuilt with ``settings`` so its MACs match ``baseline`` at ``img_size``."""

    arm: str
    baseline: str
    img_size: int
    settings: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.arm}_matched"


def matched_candidates(arm: str) -> list[dict]:
    """The settings ``match_macs`` tries for ``arm``, in order: the least change of width first (none, then one step,
    ...), and for each width the least change of depth. Widths step by 2 (hierarchical base widths: gnConv halves
    channels) or 4 (isotropic widths: order 3 splits channels in four)."""
    if arm.startswith(("convnext_", "swin_")):
        size = PLACEMENT_SIZES[arm.split("_")[1]]
        depth0, width0, step, depth_key, width_key = size.depths[2], size.base_dim, 2, "depths", "base_dim"

        def depth_setting(depth: int) -> tuple[int, ...]:
            return (*size.depths[:2], depth, size.depths[3])
    else:
        size = ISOTROPIC_SIZES[arm.split("_")[2]]
        depth0, width0, step, depth_key, width_key = size.depth, size.width, 4, "depth", "width"

        def depth_setting(depth: int) -> int:
            return depth

    depths = sorted(range(1, 2 * depth0 + 1), key=lambda d: (abs(d - depth0), d))
    widths = sorted(range(width0 // 2, 2 * width0 + 1, step), key=lambda w: (abs(w - width0), w))
    return [{depth_key: depth_setting(d), **({width_key: w} if w != width0 else {})} for w in widths for d in depths]


MATCHED = {
    arm.name: arm
    for arm in (
        MatchedArm("convnext_micro_gnconv", "convnext_micro_plain", 32, {"depths": (1, 1, 3, 1), "base_dim": 12}),
        MatchedArm("swin_micro_gnconv", "swin_micro_plain", 32, {"depths": (1, 1, 3, 1), "base_dim": 14}),
        MatchedArm("vit_iso_micro_gnconv", "vit_iso_micro_plain", 32, {"depth": 3, "width": 40}),
        MatchedArm("hornet_iso_micro", "vit_iso_micro_plain", 32, {"depth": 3, "width": 40}),
        MatchedArm("vit_iso_small_gnconv", "vit_iso_small_plain", 224, {"depth": 13}),
        MatchedArm("hornet_iso_small", "vit_iso_small_plain", 224, {"depth": 13}),
    )
}


def create_matched_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """The arm of ``MATCHED[name]`` built with its matched settings (kwargs may override them)."""
    import timm

    spec = MATCHED[name]
    model = timm.create_model(spec.arm, pretrained=pretrained, **{**spec.settings, **kwargs})
    model.pretrained_cfg = {**model.pretrained_cfg, "architecture": name}
    return model


def _default_cfg(spec: MatchedArm) -> dict:
    cfg = dict(get_pretrained_cfg(spec.arm).to_dict())
    cfg["description"] = f"{spec.arm} with its MACs matched to {spec.baseline} at {spec.img_size} px: {spec.settings}"
    return cfg


default_cfgs = generate_default_cfgs({name: _default_cfg(spec) for name, spec in MATCHED.items()})


# --- timm entry points: one function per model ----------------------------------------------------------------
@register_model
def convnext_micro_gnconv_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """convnext_micro_gnconv with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("convnext_micro_gnconv_matched", pretrained, **kwargs)


@register_model
def swin_micro_gnconv_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """swin_micro_gnconv with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("swin_micro_gnconv_matched", pretrained, **kwargs)


@register_model
def vit_iso_micro_gnconv_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """vit_iso_micro_gnconv with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("vit_iso_micro_gnconv_matched", pretrained, **kwargs)


@register_model
def hornet_iso_micro_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """hornet_iso_micro with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("hornet_iso_micro_matched", pretrained, **kwargs)


@register_model
def vit_iso_small_gnconv_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """vit_iso_small_gnconv with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("vit_iso_small_gnconv_matched", pretrained, **kwargs)


@register_model
def hornet_iso_small_matched(pretrained: bool = False, **kwargs) -> nn.Module:
    """hornet_iso_small with its MACs matched to its baseline (MATCHED)."""
    return create_matched_model("hornet_iso_small_matched", pretrained, **kwargs)

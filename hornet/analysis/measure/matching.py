"""The search behind hornet.models.matching: the depth (then width) at which a gnConv arm's MACs match its plain
baseline's, counted on the meta device (see that module for the rule and the registered results)."""

from __future__ import annotations

import timm
import torch

from hornet.analysis.measure.complexity import count_complexity
from hornet.models.matching import TOLERANCE, matched_candidates

__all__ = ["match_macs"]


def _macs(name: str, img_size: int, **settings) -> float:
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10, img_size=img_size, **settings)
    return count_complexity(model, img_size).macs


def match_macs(arm: str, baseline: str, img_size: int, *, tolerance: float = TOLERANCE) -> tuple[dict, float]:
    """(settings, MACs ratio to the baseline) of the first of ``matched_candidates(arm)`` whose MACs at ``img_size``
    are within ``tolerance`` of ``baseline``'s: depth changes first, width only when no depth alone matches."""
    target = _macs(baseline, img_size)
    for settings in matched_candidates(arm):
        ratio = _macs(arm, img_size, **settings) / target
        if abs(ratio - 1) <= tolerance:
            return settings, ratio
    raise ValueError(f"no depth and width of {arm} brings its MACs within {tolerance:.0%} of {baseline}'s")

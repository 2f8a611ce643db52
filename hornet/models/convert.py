"""Load the authors' released checkpoints: safe reading, raw/EMA choice, key and shape checks, GF filters resized."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

import torch
from torch import nn

from hornet.ops.mixers import resize_filter

__all__ = [
    "WEIGHT_CHOICES",
    "checkpoint_filter_fn",
    "describe_state_dict_mismatch",
    "local_weights_overlay",
    "read_released_checkpoint",
]

WEIGHT_CHOICES = ("raw", "ema")
# Released training checkpoints (ConvNeXt-style) keep the argparse Namespace of the run under "args": allowed while
# reading them (torch.serialization.safe_globals), never added to torch's global allow-list.
RELEASED_GLOBALS = [argparse.Namespace]


ADAPTABLE_KEYS = ("head.weight", "head.bias", "downsample_layers.0.0.weight")  # timm adapts classes / in_chans
LIGHTNING_PREFIX = {"raw": "backbone.", "ema": "ema.module."}  # ClassificationModule attribute paths


def read_released_checkpoint(path: str | os.PathLike, *, weights: str = "raw") -> dict[str, torch.Tensor]:
    """The state dict in a released checkpoint file.

    Accepts a bare state dict or a dict with the weights under ``model`` (optionally ``model_ema``, optimizer state
    and ``args``), timm style ``state_dict`` / ``state_dict_ema``, and ``hornet fit`` checkpoints (the
    ClassificationModule's ``backbone.*``, or ``ema.module.*`` for EMA). Loads with
    ``weights_only=True``. ``weights`` is ``"raw"`` (default) or ``"ema"``.
    """
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES}; got {weights!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(RELEASED_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {type(err).__name__}: {err}") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint dict")
    lightning = checkpoint.get("state_dict")
    if isinstance(lightning, Mapping) and any(str(k).startswith(LIGHTNING_PREFIX["raw"]) for k in lightning):
        prefix = LIGHTNING_PREFIX[weights]  # a hornet fit checkpoint: the backbone's (or its EMA's) entries
        state_dict = {k.removeprefix(prefix): v for k, v in lightning.items() if k.startswith(prefix)}
        if not state_dict:
            raise ValueError(f"{path} is a hornet fit checkpoint without EMA weights (model.ema_decay was off)")
        return state_dict
    keys = {"raw": ("model", "state_dict"), "ema": ("model_ema", "state_dict_ema")}[weights]
    for key in keys:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    else:
        if weights == "ema":
            raise ValueError(f"{path} has no EMA weights (looked for {list(keys)}); its keys: {sorted(checkpoint)[:8]}")
        state_dict = checkpoint
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise ValueError(f"{path} holds no tensors under the expected keys; its keys: {sorted(checkpoint)[:8]}")
    return state_dict


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def local_weights_overlay(
    pretrained: bool, overlay: Mapping | None, *, classifier: str = "head", unreleased: str | None = None
) -> dict:
    """A builder's ``pretrained_cfg_overlay`` with a local checkpoint (``file``, and ``weights``: raw or EMA) read
    here into ``state_dict`` (the released format, timm's, or a ``hornet fit`` checkpoint), so timm's builder loads
    it with its own in_chans / num_classes adaptation and strict checks. ``classifier`` is the model's
    classifier module (its pretrained_cfg's): the file's own head size decides whether timm keeps it. ``unreleased``
    names a model without released weights: ``pretrained`` without a file is then a ValueError."""
    overlay = dict(overlay or {})
    weights = overlay.pop("weights", "raw")
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"pretrained_cfg_overlay weights must be one of {WEIGHT_CHOICES}; got {weights!r}")
    if pretrained and unreleased and not overlay.get("file"):
        raise ValueError(
            f"{unreleased} has no pretrained weights (it is defined here for ablations): give a checkpoint file"
        )
    if pretrained and overlay.get("file"):
        state_dict = read_released_checkpoint(overlay["file"], weights=weights)
        overlay["state_dict"] = state_dict
        if f"{classifier}.weight" in state_dict:
            overlay.setdefault("num_classes", state_dict[f"{classifier}.weight"].shape[0])
    return overlay


def describe_state_dict_mismatch(
    state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, adaptable: tuple[str, ...] = ()
) -> str:
    """What keeps ``state_dict`` from loading into a module whose state dict is ``target`` ("" when it fits):
    missing and unexpected keys and shape mismatches, a few of each named. Keys in ``adaptable`` may differ in shape."""
    mismatched = [
        f"{key} {tuple(value.shape)} vs model {tuple(target[key].shape)}"
        for key, value in state_dict.items()
        if key in target and key not in adaptable and tuple(value.shape) != tuple(target[key].shape)
    ]
    missing = sorted(set(target) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(target))
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_describe(mismatched)}")
    return "; ".join(problems)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Check a released state dict against ``model`` and adapt it: GF filters are resized to the model's size.

    The classifier (``head.*``) and the stem conv's input channels may differ; timm adapts those. Any other missing,
    unexpected or differently shaped key is a ``ValueError`` that names them.
    """
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("complex_weight") and key in target and value.shape[0] == target[key].shape[0]:
            value = resize_filter(value.float(), tuple(target[key].shape[1:3])).contiguous()
        out[key] = value
    problems = describe_state_dict_mismatch(out, target, adaptable=ADAPTABLE_KEYS)
    if problems:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ValueError(f"checkpoint does not fit {arch} (is it for another architecture?): {problems}")
    return out

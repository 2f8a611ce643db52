"""torch.compile for HorNet-style models, one block at a time.

Compiling a whole HorNet-T is one graph of 25 blocks (minutes of compilation; the issue's GPU bench did not finish in
9.5); each block compiled on its own is one graph per distinct block shape, which the blocks of a stage share
(dynamo lifts a module's parameters into graph inputs). The GF filter takes its real-valued paths inside compiled code
(hornet.ops.mixers.global_filter), so no graph meets a complex tensor.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["compile_model", "model_blocks"]


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated units of ``model``: the members of every ``nn.Sequential`` named ``stages.<i>`` (HorNet) or
    ``blocks`` (timm's ConvNeXt, Swin and ViT, the isotropic hosts) that no other block contains; empty when none."""
    blocks: list[nn.Module] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        is_stage = len(parts) >= 2 and parts[-2] == "stages" and parts[-1].isdigit()
        if isinstance(module, nn.Sequential) and (is_stage or parts[-1] == "blocks"):
            if not any(block is ancestor for block in blocks for ancestor in _ancestors(model, parts)):
                blocks += list(module.children())
    return blocks


def _ancestors(model: nn.Module, parts: list[str]) -> list[nn.Module]:
    """The modules on the path to ``parts`` (a dotted name split), excluding the model and the module itself."""
    found, module = [], model
    for part in parts[:-1]:
        module = getattr(module, part)
        found.append(module)
    return found


def compile_model(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile each block of ``model`` in place (``nn.Module.compile``: state-dict keys and parameters unchanged), or
    the whole model when it has no blocks (``model_blocks``). ``compile_kwargs`` go to ``torch.compile``; ``dynamic``
    defaults to False, since the stages' shapes differ and automatic dynamic shapes would make every graph after the
    first stage's symbolic. Blocks whose constants differ (stochastic depth rates) get a graph each: the recompile
    limit is raised to the block count so that none falls back to eager. Returns ``model``."""
    compile_kwargs.setdefault("dynamic", False)  # a static graph per block shape (a stage), never symbolic sizes
    blocks = model_blocks(model)
    if not blocks:
        model.compile(**compile_kwargs)
        return model
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), len(blocks)))
    for block in blocks:
        block.compile(**compile_kwargs)
    return model

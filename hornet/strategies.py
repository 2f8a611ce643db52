"""Lightning's FSDP strategy set up for HorNet-style backbones, so a YAML overlay can name it with plain values.

FSDP shards the model in units; one unit per residual block (a HorBlock, or a ConvNeXt / Swin block of the placement
models) keeps each all-gather small and lets activation checkpointing wrap the same blocks; GF mixers are units of
their own (fp32 filters). Everything else about the strategy is Lightning's ``FSDPStrategy``.
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.strategies import FSDPStrategy
from timm.models.convnext import ConvNeXtBlock
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

from hornet.models.hornet import HorBlock
from hornet.ops.mixers import GlobalLocalFilter

__all__ = ["FSDP_UNITS", "RESIDUAL_BLOCKS", "BlockFSDPStrategy"]

RESIDUAL_BLOCKS: tuple[type[nn.Module], ...] = (HorBlock, ConvNeXtBlock, SwinTransformerBlock)  # checkpointed
# The FSDP units: every residual block, and inside it every GF mixer, whose filter stays fp32 when the rest is cast to
# bf16 ("bf16-true"): FSDP flattens the parameters of one unit together, which needs one dtype per unit.
FSDP_UNITS: tuple[type[nn.Module], ...] = (*RESIDUAL_BLOCKS, GlobalLocalFilter)


class BlockFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` with one FSDP unit per residual block and per GF mixer (``FSDP_UNITS``).

    Args:
        activation_checkpointing: recompute each block's activations in the backward pass (less memory, ~30% slower).
        sharding_strategy: ``FULL_SHARD`` (parameters, gradients and optimizer state; ZeRO-3 like),
            ``SHARD_GRAD_OP`` (gradients and optimizer state; ZeRO-2 like), ``HYBRID_SHARD`` (full shard inside a node,
            replicas across nodes) or ``NO_SHARD``.
        state_dict_type: ``full`` (one checkpoint file, loadable anywhere: the default) or ``sharded`` (a folder with
            one file per rank: faster to save for large models).
        cpu_offload: keep parameters and gradients in CPU memory between uses.
    """

    def __init__(
        self,
        *,
        activation_checkpointing: bool = False,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"] = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "full",
        cpu_offload: bool = False,
    ) -> None:
        super().__init__(
            auto_wrap_policy=set(FSDP_UNITS),
            activation_checkpointing_policy=set(RESIDUAL_BLOCKS) if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
        )

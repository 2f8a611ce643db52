"""HorNet: HorBlock and the four-stage backbone, with the timm model surface.

State-dict keys follow the authors' release (``downsample_layers.*``, ``stages.*.*.gnconv.*``, ``norm``, ``head``)
so released checkpoints load unchanged. No ``from __future__ import annotations`` here: FX copies the forward's
annotations into the code it generates, and TorchScript cannot read them back as strings.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, SelectAdaptivePool2d, to_2tuple, trunc_normal_
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from hornet.ops import GnConv, gnconv_dims, parse_mixer

__all__ = ["NUM_STAGES", "HorBlock", "HorNet", "per_stage", "stage_feature_sizes"]

NUM_STAGES = 4


class HorBlock(nn.Module):
    """``x + DropPath(gamma1 * gnConv(LN(x)))``, then ``x + DropPath(gamma2 * MLP(LN(x)))`` (MLP channels-last)."""

    def __init__(
        self,
        dim: int,
        *,
        order: int,
        mixer: str | Callable[[int], nn.Module],
        scale: float,
        feature_size: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=1e-6)
        self.gnconv = GnConv(dim, order=order, mixer=mixer, scale=scale, feature_size=feature_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(mlp_ratio * dim)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        if layer_scale_init_value > 0:
            self.gamma1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        else:
            self.gamma1 = None
            self.gamma2 = None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.drop_path_rate = drop_path
        self.channel_shape = [1, dim, 1, 1]  # per-channel scale of a (B, C, H, W) branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        x = self._residual(x, self.gnconv(self.norm1(x)), self.gamma1, self.channel_shape)
        y = self.norm2(x.permute(0, 2, 3, 1))  # (B, H, W, C): a free view when x is channels_last
        return self._residual(x, self._mlp(y), self.gamma2, self.channel_shape)

    def _mlp(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, C, H, W). The module's mode picks the kernels, as it does for dropout (never grad mode,
        which FX and torch.compile cannot see): training runs matmuls, whose backward is faster; eval runs 1x1
        convolutions that fuse the bias (the same math, ~7% faster on CPU than addmm)."""
        if self.training:
            return self.pwconv2(self.act(self.pwconv1(y))).permute(0, 3, 1, 2)
        y = y.permute(0, 3, 1, 2)  # (B, C, H, W) channels_last
        y = self.act(F.conv2d(y, self.pwconv1.weight[:, :, None, None], self.pwconv1.bias))
        return F.conv2d(y, self.pwconv2.weight[:, :, None, None], self.pwconv2.bias)

    def _residual(
        self, x: torch.Tensor, branch: torch.Tensor, gamma: torch.Tensor | None, shape: list[int]
    ) -> torch.Tensor:
        """``x + DropPath(gamma * branch)``; without drop path one fused ``addcmul`` pass."""
        if gamma is None:
            return x + self.drop_path(branch)
        if self.drop_path_rate == 0.0 or not self.training:
            return torch.addcmul(x, branch, gamma.view(shape))
        return x + self.drop_path(branch * gamma.view(shape))


def per_stage(name: str, value: Sequence, *, kind: type | tuple[type, ...]) -> list:
    """``value`` as a list of one ``kind`` per stage, or a ValueError naming ``name``."""
    values = list(value) if isinstance(value, (list, tuple)) else None
    if values is None or len(values) != NUM_STAGES or not all(isinstance(v, kind) for v in values):
        raise ValueError(f"{name} must be a list of {NUM_STAGES} per-stage values; got {value!r}")
    return values


def stage_feature_sizes(img_size: int | Sequence[int], stem_stride: int) -> list[tuple[int, int]]:
    """Feature-map size (H, W) of each stage for an input of ``img_size``: stem /stem_stride, then /2 per stage."""
    height, width = to_2tuple(img_size)
    sizes = []
    height, width = height // stem_stride, width // stem_stride
    for _ in range(NUM_STAGES):
        sizes.append((height, width))
        height, width = height // 2, width // 2
    return sizes


class PooledClassifierHead:
    """timm's classifier surface over a (B, C, H, W) feature map, shared by HorNet and the isotropic HorNet: global
    pool, LayerNorm, dropout, linear head (``global_pool=''`` classifies every position). Needs ``global_pool``,
    ``norm``, ``head_drop``, ``head``, ``num_features`` and ``stem_weight()`` (a weight whose device and dtype a new
    head takes). No class annotations: TorchScript would read them as the attributes' types."""

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier (on the model's device and dtype) for ``num_classes`` outputs; 0 removes it."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        like = self.stem_weight()  # always there, whatever was pruned
        head = (
            nn.Linear(self.num_features, num_classes, device=like.device, dtype=like.dtype) if num_classes > 0 else None
        )
        self.head = (head or nn.Identity()).train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)  # (B, C), or (B, C, H, W) with global_pool=''
        if self.global_pool.is_identity():  # unpooled: norm and classify each position, channels-last
            x = x.permute(0, 2, 3, 1)
        x = self.head_drop(self.norm(x))
        if not pre_logits:
            x = self.head(x)
        return x.permute(0, 3, 1, 2) if self.global_pool.is_identity() else x


class HorNet(PooledClassifierHead, nn.Module):
    """The HorNet backbone (four stages of HorBlocks) with timm's model interface.

    Args:
        depths: blocks per stage.
        orders: gnConv interaction order per stage.
        mixers: spatial mixer name per stage (``dw<k>``, ``7x7``, ``gf``).
        base_dim: width of stage 1; stages are ``[C, 2C, 4C, 8C]``.
        scale: gnConv gating scale s.
        mlp_ratio: hidden width of the block MLP relative to the stage width.
        drop_path_rate: stochastic depth, linear over all blocks.
        drop_rate: dropout before the classifier.
        layer_scale_init_value: init of the layer-scale gammas (<= 0 disables them).
        in_chans: input channels.
        num_classes: classifier outputs (0 for none).
        global_pool: timm pool type (``avg``, ``max``, ``''`` for none).
        img_size: input size the GF filters are sized for (other sizes resize them on the fly).
        stem_stride: stride (= kernel) of the patchify stem: 4 as released, 2 or 1 for 28-64 px images.
    """

    block_cls: type[nn.Module] = HorBlock
    norm2d_cls: type[nn.Module] = LayerNorm2d  # channels-first norm of the stem and downsampling layers
    # Compute in channels_last memory whatever the input layout: the depthwise convolutions' backward is ~4x faster
    # there on CPU, the norms and MLP then permute without copies. Same numbers, other strides.
    channels_last_compute: bool = True

    def __init__(
        self,
        *,
        depths: Sequence[int] = (2, 3, 18, 2),
        orders: Sequence[int] = (2, 3, 4, 5),
        mixers: Sequence[str] = ("dw7", "dw7", "dw7", "dw7"),
        base_dim: int = 64,
        scale: float = 1 / 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        img_size: int | Sequence[int] = 224,
        stem_stride: int = 4,
    ) -> None:
        super().__init__()
        depths = per_stage("depths", depths, kind=int)
        orders = per_stage("orders", orders, kind=int)
        mixers = per_stage("mixers", mixers, kind=str)
        if any(d < 1 for d in depths):
            raise ValueError(f"depths must be >= 1 per stage; got {depths}")
        if not isinstance(base_dim, int) or base_dim < 1:
            raise ValueError(f"base_dim must be a positive integer; got {base_dim!r}")
        if not isinstance(stem_stride, int) or stem_stride < 1:
            raise ValueError(
                f"stem_stride must be a positive integer (4 as released, 1 or 2 for small images); got {stem_stride!r}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1); got {drop_path_rate}")
        dims = [base_dim * 2**i for i in range(NUM_STAGES)]
        for i, (dim, order, mixer) in enumerate(zip(dims, orders, mixers)):
            parse_mixer(mixer)
            try:
                gnconv_dims(dim, order)
            except ValueError as err:
                raise ValueError(
                    f"orders[{i}]={order}: stage {i + 1} width {dim} (= base_dim * {2**i}): {err}"
                ) from None
        feature_sizes = stage_feature_sizes(img_size, stem_stride)
        if min(feature_sizes[-1]) < 1:
            raise ValueError(
                f"img_size {img_size} is too small for stem_stride {stem_stride}: the last stage would be empty"
            )

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.to_channels_last = self.channels_last_compute  # an instance attribute, so TorchScript sees it
        self.drop_rate = drop_rate
        self.img_size = to_2tuple(img_size)
        self.grad_checkpointing = False
        self.num_features = self.head_hidden_size = dims[-1]

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(in_chans, dims[0], kernel_size=stem_stride, stride=stem_stride),
                self.norm2d_cls(dims[0], eps=1e-6),
            )
        )
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(
                nn.Sequential(
                    self.norm2d_cls(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], kernel_size=2, stride=2)
                )
            )

        total_blocks = sum(depths)
        drop_rates = [drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]  # linear, as released
        self.stages = nn.ModuleList()
        self.feature_info = []
        block_index = 0
        for i in range(NUM_STAGES):
            stage = nn.Sequential(
                *[
                    self.block_cls(
                        dims[i],
                        order=orders[i],
                        mixer=mixers[i],
                        scale=scale,
                        feature_size=feature_sizes[i],
                        mlp_ratio=mlp_ratio,
                        drop_path=drop_rates[block_index + j],
                        layer_scale_init_value=layer_scale_init_value,
                    )
                    for j in range(depths[i])
                ]
            )
            self.stages.append(stage)
            block_index += depths[i]
            self.feature_info.append(dict(num_chs=dims[i], reduction=stem_stride * 2**i, module=f"stages.{i}"))

        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # --- timm model surface -------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict | Callable[[str], int]:
        """Parameter groups: coarse = stem + one group per stage; fine = the released layer-decay ids (0..13)."""
        if coarse:
            return dict(stem=r"^downsample_layers\.0\.", blocks=[(r"^(?:downsample_layers|stages)\.(\d+)", None)])
        return released_layer_id

    def stem_weight(self) -> torch.Tensor:
        return self.downsample_layers[0][0].weight

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (B, C_i, H_i, W_i) for ``indices`` (the last n stages for an int); ``norm`` is accepted for
        timm compatibility (HorNet has no norm on the final map)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW'; got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last = max_index if stop_early else len(self.stages) - 1
        intermediates = []
        if self.to_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for i in range(last + 1):
            x = self.downsample_layers[i](x)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(self.stages[i], x)
            else:
                x = self.stages[i](x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last one in ``indices`` (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_chans, H, W) -> (B, 8C, H / (stem_stride * 8), W / (stem_stride * 8))
        if self.to_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = downsample(x)
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def released_layer_id(name: str) -> int:
    """Layer id (0..13) of a parameter in the released layer-wise lr decay; the lr scale is decay^(13 - id)."""
    parts = name.split(".")
    if parts[0] == "downsample_layers":
        return {0: 0, 1: 2, 2: 3, 3: 12}[int(parts[1])]
    if parts[0] == "stages":
        stage, block = int(parts[1]), int(parts[2])
        return (1, 2, min(3 + block // 2, 11), 12)[stage]
    return 13

"""Where a step's time goes: torch.profiler's self time per op, summed into op categories.

The budget every speed change is held to (`hornet bench --profile`): each op's self time (CPU time on a CPU, kernel
time on CUDA) goes to one category, decided by its name and, for convolutions, by its weight's shape (a weight
(C, 1, k, k) over C input channels is depthwise). Self times do not overlap, so the categories add up to the step.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["CATEGORIES", "StepProfile", "op_category", "profile_step"]

MATMUL, DEPTHWISE, FFT, ELEMENTWISE, COPIES, OPTIMIZER, FRAMEWORK = CATEGORIES = (
    "matmul / dense conv",
    "depthwise conv",
    "FFT",
    "elementwise and norms",
    "copies and layout",
    "optimizer",
    "framework and other",
)

_CONVOLUTION = re.compile(r"conv(olution|_depthwise|2d|_transpose)|_slow_conv")
_MATMUL = re.compile(
    r"^aten::(mm|addmm|_addmm_activation|bmm|baddbmm|addbmm|matmul|linear|dot|mv|addmv|einsum)$|attention"
)
_COPIES = re.compile(
    r"^aten::(copy_|_to_copy|to|clone|contiguous|cat|stack|index|index_put_|_index_put_impl_|index_select|gather|"
    r"scatter\w*|constant_pad_nd|pad|roll|flip|repeat|im2col|col2im|_reshape_copy|_unsafe_index\w*)$"
)
_VIEWS_AND_ALLOCATION = re.compile(
    r"^aten::(view|_unsafe_view|reshape|_reshape_alias|permute|transpose|t|expand|slice|select|split\w*|chunk|narrow|"
    r"unbind|as_strided|squeeze|unsqueeze|detach|alias|lift_fresh|empty\w*|resize_|zeros|ones|zeros_like|ones_like|"
    r"full|set_|result_type|item|_local_scalar_dense|is_nonzero)$"
)


def op_category(name: str, input_shapes: Sequence[Sequence[int]] = ()) -> str:
    """The category of one profiler op, from its name and (for convolutions) its inputs' shapes."""
    if name.startswith("Optimizer.") or "_foreach_" in name or "_fused_adam" in name:
        return OPTIMIZER
    if not name.startswith("aten::"):
        return FRAMEWORK  # autograd engine, user scopes, kernel launches
    if "fft" in name:
        return FFT
    if _CONVOLUTION.search(name):
        return DEPTHWISE if _is_depthwise(name, input_shapes) else MATMUL
    if _MATMUL.search(name):
        return MATMUL
    if _COPIES.match(name):
        return COPIES
    if _VIEWS_AND_ALLOCATION.match(name):
        return FRAMEWORK
    return ELEMENTWISE


def _inside_optimizer(event) -> bool:
    """Whether an op ran inside ``optimizer.step()`` (its ops are plain elementwise ones, e.g. AdamW's lerp_)."""
    while event is not None:
        if event.name.startswith("Optimizer."):
            return True
        event = event.cpu_parent
    return False


def _is_depthwise(name: str, shapes: Sequence[Sequence[int]]) -> bool:
    """A convolution whose weight is (C, 1, k, k) over an input of C channels. The forward ops take (input, weight,
    ...), the backward ones (grad_output, input, weight, ...)."""
    first = 1 if "backward" in name else 0
    if len(shapes) < first + 2:
        return False
    inputs, weight = shapes[first], shapes[first + 1]
    return len(weight) == 4 and len(inputs) == 4 and weight[1] == 1 and weight[0] == inputs[1] > 1


@dataclass
class StepProfile:
    """Seconds per step by category (``categories``, every category present) and the ops that took longest
    (``top_ops``: name, category, seconds per step)."""

    device: str
    categories: dict[str, float]
    top_ops: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.categories.values())

    def shares(self) -> dict[str, float]:
        """Each category's share of the step, in percent."""
        total = self.total or 1.0
        return {category: 100 * seconds / total for category, seconds in self.categories.items()}


def profile_step(step: Callable[[], None], *, device: str = "cpu", steps: int = 2, top: int = 10) -> StepProfile:
    """Profile ``steps`` calls of ``step`` (warmed up by the caller) and sum each op's self time into categories."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities, record_shapes=True) as profiler:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    seconds: dict[str, float] = dict.fromkeys(CATEGORIES, 0.0)
    per_op: dict[tuple[str, str], float] = defaultdict(float)
    for event in profiler.events():
        microseconds = event.self_device_time_total if cuda else event.self_cpu_time_total
        if microseconds <= 0:
            continue
        category = OPTIMIZER if _inside_optimizer(event) else op_category(event.name, event.input_shapes or ())
        seconds[category] += microseconds / 1e6 / steps
        per_op[event.name, category] += microseconds / 1e6 / steps
    ranked = sorted(per_op.items(), key=lambda item: -item[1])[:top]
    return StepProfile(device, seconds, [(name, category, s) for (name, category), s in ranked])

"""The GF filter's paths (hornet.ops.mixers.FILTER_PATHS) raced on the maps a model's GF mixers see: the measurement
behind ``filter_path``'s choice per device and map size (`hornet bench MODEL --filter-paths`)."""

from __future__ import annotations

import functools
import random
import statistics

import torch

from hornet.analysis.measure.benchmark import BenchConfig, build_for_bench, timed_seconds

__all__ = ["race_filter_paths"]

DENSE_RACE_MAX_PIXELS = 1024  # the circulant matrix is (HW)^2 per channel: past 32x32 it is neither small nor fast


def race_filter_paths(name: str, config: BenchConfig) -> list[dict]:
    """Forward + backward milliseconds of each GF filter path (hornet.ops.mixers.FILTER_PATHS) on every distinct map
    the GF mixers of ``name`` see at ``config``'s batch and image size, raced in shuffled rounds (median), and the
    path ``auto`` picks on this device. The measurement behind ``filter_path``'s thresholds."""
    from hornet.ops.mixers import GlobalLocalFilter, filter_path

    model = build_for_bench(name, config)
    maps: dict[tuple[int, int, int], torch.Tensor] = {}  # (channels, H, W) -> the filter weight it meets

    def record(module: GlobalLocalFilter, inputs: tuple[torch.Tensor]) -> None:
        _, channels, height, width = inputs[0].shape
        maps.setdefault((channels // 2, height, width), module.complex_weight.detach())

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, GlobalLocalFilter)]
    if not hooks:
        raise ValueError(f"{name} has no GF mixer: nothing to race")
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, config.img_size, config.img_size, device=config.device))
    for hook in hooks:
        hook.remove()
    rows = []
    for (channels, height, width), weight in maps.items():
        x = torch.randn(config.batch_size, channels, height, width, device=config.device, requires_grad=True)
        weight = weight.clone().requires_grad_(True)
        paths = ["dft", "fft"] + (["dense"] if height * width <= DENSE_RACE_MAX_PIXELS else [])

        steps = {path: functools.partial(_filter_step, x, weight, path) for path in paths}
        for step in steps.values():
            for _ in range(config.warmup):
                step()
        timings: dict[str, list[float]] = {path: [] for path in paths}
        for round_index in range(config.rounds):
            order = list(paths)
            random.Random(round_index).shuffle(order)
            for path in order:
                timings[path].append(1000 * timed_seconds(steps[path], config.steps, config.device) / config.steps)
        row = {"map": f"{height}x{width}", "channels": channels, "batch": config.batch_size}
        for path in ("dense", "dft", "fft"):
            row[f"{path}_ms"] = round(statistics.median(timings[path]), 3) if path in timings else "-"
        row["fastest"] = min(timings, key=lambda path: statistics.median(timings[path]))
        row["auto"] = filter_path(height, width, torch.device(config.device).type)
        rows.append(row)
    return rows


def _filter_step(x: torch.Tensor, weight: torch.Tensor, path: str) -> None:
    from hornet.ops.mixers import global_filter

    global_filter(x, weight, path).sum().backward()

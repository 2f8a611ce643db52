"""Effective receptive fields (Luo et al. 2016, measured as RepLKNet does): how much each input pixel moves the
centre of a stage's output.

For an image, F is the stage's output map; c = sum over channels of ReLU(centre of F); the map is ReLU(dc/dx)
summed over input channels, averaged over the images, and shown as log10(A + 1) / max. The "high-contribution area
ratio" at t is the area of the smallest square centred on the image's centre holding a fraction t of the map's total,
over the image's area (RepLKNet's t: 0.2, 0.3, 0.5, 0.99).

The centre is the true centre, on even maps too: a map of even side has no centre cell, so the centre of F is the
mean of its central 2x2 (2x1, 1x2) cells, whose receptive fields sit symmetrically about the image's centre; and the
squares grow about the image's centre (even sides on an even image, odd on an odd one). Taking cell (h//2, w//2)
instead measures the field of a cell half a stage-stride off the centre (on a 2x2 map, a quarter of the image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

__all__ = [
    "AREA_THRESHOLDS",
    "area_ratios",
    "centre_cells",
    "erf_map",
    "erf_picture",
    "erf_rows",
    "stage_count",
    "stage_features",
]

AREA_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


def centre_cells(features: torch.Tensor) -> torch.Tensor:
    """The centre of a feature map (B, D, h, w) -> (B, D): its centre cell on an odd side, the mean of the two
    central cells on an even side."""
    height, width = features.shape[-2:]
    central = features[..., (height - 1) // 2 : height // 2 + 1, (width - 1) // 2 : width // 2 + 1]  # (B, D, 1|2, 1|2)
    return central.mean(dim=(-2, -1))


def erf_map(features: Callable[[torch.Tensor], torch.Tensor], images: Iterable[torch.Tensor]) -> torch.Tensor:
    """The aggregated contribution map A (H, W): ``features`` maps an input batch (B, C, H, W) to one stage's output
    (B, D, h, w); ``images`` yields input batches. Gradients of each image are its own (the sum over the batch
    separates, every image's centre depends only on that image in eval mode)."""
    total, count = None, 0
    for x in images:
        x = x.detach().clone().requires_grad_(True)
        out = features(x)  # (B, D, h, w)
        centre = centre_cells(out)  # (B, D)
        (grad,) = torch.autograd.grad(centre.relu().sum(), x)  # (B, C, H, W)
        contribution = grad.relu().sum(dim=1)  # (B, H, W)
        total = contribution.sum(0) if total is None else total + contribution.sum(0)
        count += len(x)
    if total is None or count == 0:
        raise ValueError("no images to measure the effective receptive field on (an empty data split?)")
    return total / count


def erf_picture(aggregated: torch.Tensor) -> torch.Tensor:
    """log10(A + 1) scaled to a maximum of 1, as RepLKNet shows it."""
    scaled = torch.log10(aggregated + 1)
    return scaled / scaled.max().clamp_min(1e-12)


def area_ratios(aggregated: torch.Tensor, thresholds: Sequence[float] = AREA_THRESHOLDS) -> dict[float, float]:
    """For each t: the area of the smallest square centred on the map's centre whose sum reaches t of the total,
    over the map's area. The squares grow one pixel a side from the central cell (odd side) or 2x2 cells (even
    side), so they stay centred; a square that would leave the map is clipped to it."""
    height, width = aggregated.shape
    total = aggregated.sum()
    ratios = {}
    grow = 0
    for t in sorted(thresholds):
        while True:
            rows = _centred(height, (height % 2 or 2) + 2 * grow)
            cols = _centred(width, (width % 2 or 2) + 2 * grow)
            window = aggregated[rows, cols]
            if window.sum() >= t * total or window.numel() == aggregated.numel():
                break
            grow += 1
        ratios[t] = window.numel() / aggregated.numel()
    return ratios


def _centred(length: int, side: int) -> slice:
    """The centred run of ``side`` cells of a ``length``-cell axis (same parity), clipped to it."""
    start = (length - side) // 2
    return slice(max(start, 0), min(start + side, length))


def stage_features(model: torch.nn.Module, stage: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the output of ``stage`` (0-based) of a timm model, through its ``forward_intermediates``."""
    if not hasattr(model, "forward_intermediates"):
        raise ValueError(
            f"{type(model).__name__} has no forward_intermediates: no stage feature map to measure an ERF on"
        )
    return lambda x: model.forward_intermediates(x, indices=[stage], intermediates_only=True)[0]


def stage_count(model: torch.nn.Module) -> int:
    """Stages of a timm model (entries of its ``feature_info``)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} lists no feature stages (timm feature_info): no ERF to measure")
    return len(info)


def erf_rows(
    model: torch.nn.Module,
    batches: Callable[[], Iterable[torch.Tensor]],
    *,
    sizes: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], dict[tuple[int, int], torch.Tensor]]:
    """Per input size and stage: the area ratios (rows size, stage, t, ratio) and the ERF picture. ``batches()``
    yields image batches (B, C, H, W) afresh each time; they are resized bilinearly to each size. A size the model
    cannot take (a fixed-size Swin or ViT) is skipped with a row saying so."""
    rows, pictures = [], {}
    for size in sizes:
        for stage in range(stage_count(model)):
            resized = (
                torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                for x in batches()
            )
            try:
                aggregated = erf_map(stage_features(model, stage), resized)
            except (RuntimeError, AssertionError) as err:
                rows.append({"img_size": size, "stage": stage + 1, "t": None, "ratio": None, "note": str(err)[:200]})
                break
            pictures[(size, stage + 1)] = erf_picture(aggregated)
            for t, ratio in area_ratios(aggregated).items():
                rows.append({"img_size": size, "stage": stage + 1, "t": t, "ratio": round(ratio, 5), "note": ""})
            if progress is not None:
                progress(1)
    return rows, pictures

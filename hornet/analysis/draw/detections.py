"""Detections as pictures: boxes and masks drawn on the image in class colours, and ground truth | prediction sheets.

Drawing is torchvision's (``draw_segmentation_masks``, ``draw_bounding_boxes``); the colours are the segmentation
masks' palette (hornet.analysis.draw.masks), indexed by the detector's labels 1..K.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from hornet.analysis.draw.masks import image_sheet, palette

__all__ = ["class_name", "detection_sheet", "draw_detections"]

MIN_SIDE = 256  # smaller images are enlarged (nearest) to this side before drawing, so labels stay legible


def class_name(label: int, classes: Sequence[str]) -> str:
    """The name of a detector's label (1..K; 0 is background) in ``classes``, or the number when it has none."""
    return classes[label - 1] if 0 < label <= len(classes) else str(label)


def _as_rgb(image: torch.Tensor, scale: int) -> torch.Tensor:
    """(C, H, W) in any range -> (3, H x scale, W x scale) uint8, min-max scaled."""
    picture = image.detach().float().cpu()
    picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp_min(1e-6)
    picture = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]  # grey -> RGB
    if scale > 1:
        picture = F.interpolate(picture[None], scale_factor=scale, mode="nearest")[0]
    return (picture * 255).round().to(torch.uint8)


def draw_detections(
    image: torch.Tensor,
    detection: dict[str, torch.Tensor],
    classes: Sequence[str] = (),
    *,
    score_threshold: float = 0.0,
) -> torch.Tensor:
    """``image`` (C, H, W) with the detection's (or a target's) ``masks`` and ``boxes`` drawn, labelled by class
    name (and score, when it has ``scores`` at or above ``score_threshold``). Returns (3, H', W') uint8, enlarged
    when the image is small."""
    scale = max(1, MIN_SIDE // max(image.shape[-2:]))
    keep = torch.ones(len(detection["boxes"]), dtype=torch.bool)
    if "scores" in detection:
        keep = detection["scores"].cpu() >= score_threshold
    labels = detection["labels"].cpu()[keep].tolist()
    colours = [tuple(int(c) for c in palette(max(len(classes), max(labels, default=0)) + 1)[k]) for k in labels]
    picture = _as_rgb(image, scale)
    if "masks" in detection and keep.any():
        masks = detection["masks"].cpu()[keep].bool()  # (N, H, W)
        if scale > 1:
            masks = F.interpolate(masks[:, None].float(), scale_factor=scale, mode="nearest")[:, 0].bool()
        picture = draw_segmentation_masks(picture, masks, alpha=0.45, colors=colours)
    if keep.any():
        names = [class_name(k, classes) for k in labels]
        if "scores" in detection:
            names = [f"{n} {s:.2f}" for n, s in zip(names, detection["scores"].cpu()[keep].tolist())]
        boxes = detection["boxes"].detach().cpu()[keep].float() * scale
        picture = draw_bounding_boxes(picture, boxes, labels=names, colors=colours, width=2)
    return picture


def detection_sheet(
    images: Sequence[torch.Tensor],
    detections: Sequence[dict[str, torch.Tensor]],
    path: str | Path,
    *,
    classes: Sequence[str] = (),
    targets: Sequence[dict[str, torch.Tensor]] | None = None,
    names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
) -> Path:
    """A figure with a row per image: the ground truth (when given) and the prediction, drawn as draw_detections."""
    columns = [*(["ground truth"] if targets is not None else []), "prediction"]
    cells = []
    for row, image in enumerate(images):
        shown = [*([targets[row]] if targets is not None else []), detections[row]]
        drawn = [draw_detections(image, d, classes, score_threshold=score_threshold) for d in shown]
        cells.append([picture.permute(1, 2, 0).numpy() for picture in drawn])  # (H, W, 3) each
    return image_sheet(cells, columns, path, names=names, panel=3.2)

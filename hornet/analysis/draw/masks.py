"""Segmentation masks as pictures: a fixed colour per class, palette PNGs, and image | label | prediction sheets."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["IGNORE_COLOUR", "image_sheet", "mask_image", "mask_sheet", "palette"]

IGNORE_COLOUR = (255, 255, 255)  # label 255 (ignored pixels) is drawn white


@lru_cache(maxsize=8)
def palette(num_classes: int) -> np.ndarray:
    """(256, 3) uint8 colours: class 0 black, then matplotlib's tab20 and a seeded spread beyond it; 255 white.
    Built once per class count (every predicted mask asks for it); read it, don't modify it."""
    from matplotlib import colormaps

    colours = np.zeros((256, 3), dtype=np.uint8)
    tab20 = (np.array(colormaps["tab20"].colors) * 255).astype(np.uint8)
    extra = np.random.default_rng(0).integers(40, 230, size=(256, 3), dtype=np.uint8)
    for k in range(1, min(num_classes, 255)):
        colours[k] = tab20[(k - 1) % 20] if k <= 20 else extra[k]
    colours[255] = IGNORE_COLOUR
    return colours


def mask_image(mask: torch.Tensor | np.ndarray, num_classes: int) -> Image.Image:
    """A (H, W) class-index mask as a palette PNG: the pixels keep the class ids, the palette shows them in colour."""
    values = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    image.putpalette(palette(num_classes).reshape(-1).tolist())
    return image


def image_sheet(
    cells: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str],
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    panel: float = 2.2,
) -> Path:
    """A figure of pictures, a row per image and a column per title (titles over the first row, ``names`` beside
    each row). A cell is (H, W) grey in [0, 1] or (H, W, 3) RGB uint8. Saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(cells), len(titles), figsize=(panel * len(titles), panel * len(cells)))
    axes = np.atleast_2d(axes).reshape(len(cells), len(titles))
    for row, pictures in enumerate(cells):
        for col, picture in enumerate(pictures):
            axis = axes[row, col]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[col])
        if names:
            axes[row, 0].set_ylabel(names[row], fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def mask_sheet(
    images: torch.Tensor,
    predictions: torch.Tensor,
    num_classes: int,
    path: str | Path,
    *,
    labels: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """A figure with a row per image: the image, its label (when given) and the prediction, in the class colours.

    ``images`` (N, C, H, W) in any range (each shown min-max scaled); ``predictions`` and ``labels`` (N, H, W)."""
    colours = palette(num_classes)
    columns = [("image", None), *([("label", labels)] if labels is not None else []), ("prediction", predictions)]
    cells = []
    for row, image in enumerate(images):
        picture = image.float().cpu()
        picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp_min(1e-6)
        picture = picture.permute(1, 2, 0).squeeze(-1).numpy()  # (H, W, C), or (H, W) for one channel
        cells.append([picture if masks is None else colours[masks[row].cpu().numpy().astype(np.uint8)]
                      for _, masks in columns])  # fmt: skip
    return image_sheet(cells, [title for title, _ in columns], path, names=names)

"""Numbers printed in the HorNet paper (Table 1 / model zoo, ImageNet-1K at 224 px unless noted)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAPER_TABLE1", "PaperRow"]


@dataclass(frozen=True)
class PaperRow:
    name: str
    params_m: float | None  # as printed (None: the printed value matches no known head size, see docs/reference.md)
    gflops: float  # MACs in G, as printed (fvcore convention)
    top1: float | None  # ImageNet-1K top-1 as printed (None: 22K pre-training, no 1K number in Table 1)
    note: str = ""


PAPER_TABLE1: tuple[PaperRow, ...] = (
    PaperRow("hornet_tiny_7x7", 22.0, 4.0, 82.8),
    PaperRow("hornet_tiny_gf", 23.0, 3.9, 83.0),
    PaperRow("hornet_small_7x7", 50.0, 8.8, 83.8),
    PaperRow("hornet_small_gf", 50.0, 8.7, 84.0),
    PaperRow("hornet_base_7x7", 87.0, 15.6, 84.2),
    PaperRow("hornet_base_gf", 88.0, 15.5, 84.3),
    PaperRow("hornet_large_7x7", None, 34.8, None, "ImageNet-22K"),
    PaperRow("hornet_large_gf", None, 34.7, None, "ImageNet-22K"),
    PaperRow("hornet_large_gf_img384", None, 101.8, None, "ImageNet-22K, 384 px"),
)

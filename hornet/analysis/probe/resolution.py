"""Test-time resolution sweep: a trained run's checkpoint evaluated at several input sizes (GF filters are resized)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from hornet.analysis.probe.trained import datamodule_from_config
from hornet.models import input_size_kwargs
from hornet.runs import RunDir, class_args

__all__ = ["resolution_sweep"]


@torch.inference_mode()
def resolution_sweep(
    run_dir: str | Path, sizes: list[int], *, checkpoint: str | Path | None = None, limit: int | None = None
) -> list[dict]:
    """Top-1 on the test split of ``run_dir``'s data at each size in ``sizes``.

    The run's ``config.yaml`` names the backbone and the data; ``checkpoint`` defaults to its best checkpoint.
    ``limit`` evaluates only the first N test images (quick looks). Returns rows ``{img_size, top1, images}``.
    """
    run = RunDir(run_dir)
    config = run.config()
    checkpoint = checkpoint or run.best_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{run.checkpoints} holds no best checkpoint; pass checkpoint=")
    model_config = class_args(config["model"])
    rows = []
    for size in sizes:
        data = datamodule_from_config(config["data"], img_size=size)
        data.setup("test")
        kwargs = {**(model_config.get("backbone_kwargs") or {}), **input_size_kwargs(model_config["backbone"], size)}
        overlay = dict(file=str(checkpoint))
        model = timm.create_model(
            model_config["backbone"], pretrained=True, pretrained_cfg_overlay=overlay, num_classes=data.num_classes,
            in_chans=data.in_chans, **kwargs,
        ).eval()  # fmt: skip
        correct = seen = 0
        for x, y in data.test_dataloader():
            if limit is not None and seen >= limit:
                break
            correct += (model(x).argmax(-1) == y).sum().item()
            seen += len(y)
        rows.append({"img_size": size, "top1": correct / seen, "images": seen})
    return rows

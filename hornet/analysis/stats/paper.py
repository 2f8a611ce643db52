"""Numbers printed in the HorNet paper and its release: Table 1 (ImageNet-1K at 224 px unless noted) and the
per-backbone dense-prediction tables of the release's segmentation and detection READMEs (docs/reference.md states
the same values; a test holds the two together), with the command that trains each dense row here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAPER_ADE20K_UPERNET", "PAPER_COCO_CASCADE_3X", "PAPER_TABLE1", "DenseRow", "PaperRow", "dense_command"]


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


@dataclass(frozen=True)
class DenseRow:
    """One backbone's row of a release dense-prediction table (FLOPs as printed: G multiply-adds of the whole model).

    ADE20K (UperNet, 160k iterations): ``first`` / ``second`` are single-scale / multi-scale + flip mIoU at ``crop``.
    COCO (Cascade Mask R-CNN, 3x): box AP / mask AP, ``crop`` None."""

    backbone: str
    first: float
    second: float
    params_m: float
    gflops: float
    crop: int | None = None


PAPER_ADE20K_UPERNET: tuple[DenseRow, ...] = (
    DenseRow("hornet_tiny_7x7", 48.1, 48.9, 52, 926, 512),
    DenseRow("hornet_tiny_gf", 49.2, 49.3, 55, 924, 512),
    DenseRow("hornet_small_7x7", 49.2, 49.8, 81, 1030, 512),
    DenseRow("hornet_small_gf", 50.0, 50.5, 85, 1027, 512),
    DenseRow("hornet_base_7x7", 50.0, 50.5, 121, 1174, 512),
    DenseRow("hornet_base_gf", 50.5, 50.9, 126, 1171, 640),  # printed 640 (docs/reference.md)
    DenseRow("hornet_large_7x7", 54.1, 54.5, 232, 2473, 640),
    DenseRow("hornet_large_gf", 55.0, 55.2, 239, 2465, 640),
)

PAPER_COCO_CASCADE_3X: tuple[DenseRow, ...] = (
    DenseRow("hornet_tiny_7x7", 51.7, 44.8, 80, 730),
    DenseRow("hornet_tiny_gf", 52.4, 45.6, 80, 728),
    DenseRow("hornet_small_7x7", 52.7, 45.6, 107, 830),
    DenseRow("hornet_small_gf", 53.3, 46.3, 108, 827),
    DenseRow("hornet_base_7x7", 53.3, 46.1, 144, 969),
    DenseRow("hornet_base_gf", 54.0, 46.9, 146, 965),
    DenseRow("hornet_large_7x7", 55.4, 48.0, 251, 1363),
    DenseRow("hornet_large_gf", 56.0, 48.6, 259, 1358),
)


def dense_command(task: str, row: DenseRow) -> str:
    """The `hornet fit` that trains ``row``'s backbone in the released setting here, into runs/<task>_<backbone>/
    (``task``: ``ade20k`` or ``coco``). COCO trains Mask R-CNN (torchvision has no Cascade R-CNN) at the 3x schedule
    (36 epochs, x 0.1 after 27 and 33), so its AP is not the Cascade row's; the ADE20K command is the release's
    UperNet setting itself. Weights: the backbone's ImageNet checkpoint as <backbone>.pth, data under /data."""
    if task == "ade20k":
        suite, overlay, arm, root = "horfpn_ablation", "segmentation/ade20k_upernet", "upernet", "ADEChallengeData2016"
        extra = ""
        if row.crop != 512:  # the release's 640 crop, sliding with mmseg's 2/3 stride
            extra = f" --data.init_args.img_size {row.crop} --model.init_args.slide_crop {row.crop}" \
                    f" --model.init_args.slide_stride {row.crop * 2 // 3}"  # fmt: skip
    elif task == "coco":
        suite, overlay, arm, root = "horfpn_detection_ablation", "detection/coco_mask_rcnn_1x", "fpn", "coco"
        extra = " --trainer.max_epochs 36 --model.init_args.step_epochs [27,33]"
    else:
        raise ValueError(f"task must be ade20k or coco; got {task!r}")
    return (
        f"hornet fit --config experiments/{suite}.yaml --config experiments/{overlay}.yaml --ablation.only {arm}"
        f" --ablation.name {task}_{row.backbone} --model.init_args.backbone {row.backbone}"
        f" --model.init_args.backbone_checkpoint {row.backbone}.pth --data.init_args.root /data/{root}{extra}"
    )

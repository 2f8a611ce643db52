"""Object detection and instance segmentation: torchvision's Faster R-CNN and Mask R-CNN over any timm backbone, with
an FPN neck that is torchvision's plain FPN or HorFPN.

HorFPN for detection, as released (arXiv 2207.14284, the authors' mmdet code): the FPN's 3x3 output convolution of
every level, applied after the top-down sum, becomes a gnConv block (hornet.models.horfpn.GnConvFusion: ``proj_in``
to 2C, order 2, depthwise 7x7 or the Global-Local Filter, no scale on the mixer, ``proj_out``; no norm, no
activation), C = 256, and a fifth level by max-pooling the coarsest output. The GF filter is one size for every
level, that of a 32 x 32 map (the release's h = 32, w = 17), resized bilinearly to each level's map. Everything else
is torchvision's: the RPN, RoIAlign over levels 0-3, the two-FC box head, the four-conv mask head, the losses and the
post-processing.

The backbone is timm's ``features_only`` getter (hornet.models.segmentor.create_feature_backbone), so HorNet,
ConvNeXt, Swin and ResNet keep their ``group_matcher`` (layer decay) and classification checkpoint names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from hornet.models.horfpn import HORFPN_MIXERS, GnConvFusion
from hornet.models.segmentor import create_feature_backbone

__all__ = [
    "NECKS",
    "RELEASED_DETECTOR",
    "DetectorCost",
    "DetectorSpec",
    "PyramidBackbone",
    "create_detector",
    "create_neck",
]

NECKS = ("fpn", *HORFPN_MIXERS)  # fpn: torchvision's FPN; horfpn_7x7 / horfpn_gf: its output convs replaced by gnConv
BOX_ROI_SIZE, MASK_ROI_SIZE = 7, 14  # RoIAlign outputs of the box and mask heads (as released)
GF_MAP_SIDE = 32  # HorFPN-GF's filter is sized for a 32 x 32 map at every level (released: h = 32, w = 17)


def create_neck(
    in_channels: Sequence[int],
    channels: int,
    neck: str = "fpn",
    *,
    order: int = 2,
    mixer: str | None = None,
    scale: float = 1.0,
) -> FeaturePyramidNetwork:
    """torchvision's FPN (1x1 laterals, top-down sum, 3x3 output conv per level, a max-pooled fifth level) over
    ``in_channels``; for HorFPN each level's output conv is a bare gnConv block (GF filters sized for GF_MAP_SIDE)."""
    if neck not in NECKS:
        raise ValueError(f"model.detector.neck must be one of {list(NECKS)}; got {neck!r}")
    fpn = FeaturePyramidNetwork(list(in_channels), channels, extra_blocks=LastLevelMaxPool())
    if neck != "fpn":
        for level in range(len(in_channels)):
            fpn.layer_blocks[level] = GnConvFusion(
                channels, channels, order=order, mixer=mixer or HORFPN_MIXERS[neck], scale=scale,
                feature_size=(GF_MAP_SIDE, GF_MAP_SIDE), norm_act=False,
            )  # fmt: skip
    return fpn


class PyramidBackbone(nn.Module):
    """What torchvision's detectors take as ``backbone``: image -> the neck's levels ``"0"``-``"3"`` and ``"pool"``
    (each (B, C, H / r_l, W / r_l)), with ``out_channels`` C."""

    def __init__(self, body: nn.Module, neck: FeaturePyramidNetwork, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)  # 4 x (B, C_l, H / r_l, W / r_l)
        return self.neck(OrderedDict((str(level), f) for level, f in enumerate(features)))


@dataclass(frozen=True)
class DetectorSpec:
    """A two-stage detector beside its backbone (``model.detector`` in a config); the defaults are the released COCO
    setting.

    Args:
        kind: ``mask_rcnn`` (boxes and masks) or ``faster_rcnn`` (boxes).
        neck: ``fpn`` (torchvision's), ``horfpn_7x7`` or ``horfpn_gf`` (gnConv as each level's output conv).
        channels: the neck's width C (256).
        gnconv_order, gnconv_mixer, gnconv_scale: HorFPN's gnConv (order 2, the neck's mixer, s = 1 as released).
        anchor_scale: anchor side / level stride (8: 32-512 px at strides 4-64), aspect ratios 0.5, 1, 2.
        min_size, max_size: the detector resizes images to these (default: the data's img_size, which leaves square
            images as they are; COCO as released: 800, 1333).
        box_head_width, mask_head_width, mask_head_convs, rois_per_image, proposals_train, proposals_test,
            detections_per_image: the heads' sizes (released: 1024, 256, 4, 512, 2000, 1000, 100).
    """

    kind: Literal["mask_rcnn", "faster_rcnn"] = "mask_rcnn"
    neck: str = "fpn"
    channels: int = 256
    gnconv_order: int = 2
    gnconv_mixer: str | None = None
    gnconv_scale: float = 1.0
    anchor_scale: float = 8.0
    min_size: int | None = None
    max_size: int | None = None
    box_head_width: int = 1024
    mask_head_width: int = 256
    mask_head_convs: int = 4
    rois_per_image: int = 512
    proposals_train: int = 2000
    proposals_test: int = 1000
    detections_per_image: int = 100

    def __post_init__(self) -> None:
        if self.kind not in ("mask_rcnn", "faster_rcnn"):
            raise ValueError(f"model.detector.kind must be 'mask_rcnn' or 'faster_rcnn'; got {self.kind!r}")
        if self.neck not in NECKS:
            raise ValueError(f"model.detector.neck must be one of {list(NECKS)}; got {self.neck!r}")
        for key in ("channels", "box_head_width", "rois_per_image", "mask_head_width", "mask_head_convs",
                    "proposals_train", "proposals_test", "detections_per_image"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ValueError(f"model.detector.{key} must be a positive integer; got {getattr(self, key)}")
        if self.anchor_scale <= 0:
            raise ValueError(f"model.detector.anchor_scale must be > 0; got {self.anchor_scale}")

    @property
    def masks(self) -> bool:
        return self.kind == "mask_rcnn"


RELEASED_DETECTOR = DetectorSpec()  # the released COCO setting: Mask R-CNN, FPN C = 256, the heads' sizes


def create_detector(
    backbone: str,
    spec: DetectorSpec = RELEASED_DETECTOR,
    *,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 800,
    backbone_kwargs: dict | None = None,
) -> FasterRCNN:
    """A torchvision Faster R-CNN or Mask R-CNN (``spec.kind``) over the timm ``backbone`` and ``spec``'s neck.

    ``num_classes`` counts the object classes (the detector adds background as class 0; targets' labels are 1..K).
    Images come normalised by the data; the detector only resizes them (``spec.min_size`` / ``max_size``)."""
    if num_classes < 1:
        raise ValueError(f"model.num_classes must be >= 1; got {num_classes}")
    body = create_feature_backbone(backbone, in_chans=in_chans, img_size=img_size, **(backbone_kwargs or {}))
    strides = body.feature_info.reduction()
    channels = spec.channels
    fpn = create_neck(
        body.feature_info.channels(), channels, spec.neck, order=spec.gnconv_order, mixer=spec.gnconv_mixer,
        scale=spec.gnconv_scale,
    )  # fmt: skip
    levels = [*strides, strides[-1] * 2]  # the max-pooled fifth level
    anchors = AnchorGenerator(
        sizes=tuple((spec.anchor_scale * stride,) for stride in levels), aspect_ratios=((0.5, 1.0, 2.0),) * len(levels)
    )
    names = [str(level) for level in range(len(strides))]
    min_size = spec.min_size or img_size
    kwargs = dict(
        num_classes=None,  # the predictors below carry the classes
        min_size=min_size, max_size=spec.max_size or min_size,
        image_mean=[0.0] * in_chans, image_std=[1.0] * in_chans,  # the data normalises
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=spec.proposals_train, rpn_post_nms_top_n_train=spec.proposals_train,
        rpn_pre_nms_top_n_test=spec.proposals_test, rpn_post_nms_top_n_test=spec.proposals_test,
        box_roi_pool=MultiScaleRoIAlign(names, BOX_ROI_SIZE, sampling_ratio=2),
        box_head=TwoMLPHead(channels * BOX_ROI_SIZE**2, spec.box_head_width),
        box_predictor=FastRCNNPredictor(spec.box_head_width, num_classes + 1),
        box_batch_size_per_image=spec.rois_per_image, box_detections_per_img=spec.detections_per_image,
    )  # fmt: skip
    pyramid = PyramidBackbone(body, fpn, channels)
    if not spec.masks:
        return FasterRCNN(pyramid, **kwargs)
    width = spec.mask_head_width
    return MaskRCNN(
        pyramid,
        mask_roi_pool=MultiScaleRoIAlign(names, MASK_ROI_SIZE, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, [width] * spec.mask_head_convs, dilation=1),
        mask_predictor=MaskRCNNPredictor(width, width, num_classes + 1),
        **kwargs,
    )


class DetectorCost(nn.Module):
    """A detector's inference at a fixed workload, for counting its MACs and timing it (also on the meta device):
    the backbone and neck on the image, the RPN head on every level, the box head on ``proposals`` RoIs and the mask
    head on ``detections`` RoIs, as mmdet counts a two-stage detector at test time (1000 and 100). The data-dependent
    steps in between (proposal decoding, NMS) cost no MACs and are left out. Returns every output flattened into one
    vector."""

    def __init__(self, detector: FasterRCNN) -> None:
        super().__init__()
        self.detector = detector
        self.proposals = detector.rpn._post_nms_top_n["testing"]
        self.detections = detector.roi_heads.detections_per_img

    def _rois(self, level: torch.Tensor, stride: float, count: int, size: int) -> torch.Tensor:
        """``count`` RoIs per image of ``level`` (B, C, h, w), boxes in a fixed spread -> (B x count, C, size, size)."""
        batch, device = level.shape[0], level.device
        height, width = level.shape[-2] * stride, level.shape[-1] * stride
        t = torch.linspace(0, 1, count, device=device)  # (count,)
        corners = torch.stack([t * width / 2, t * height / 2, (1 + t) * width / 2, (1 + t) * height / 2], dim=1)
        image = torch.arange(batch, device=device, dtype=corners.dtype).repeat_interleave(count)  # (B x count,)
        boxes = torch.cat([image[:, None], corners.repeat(batch, 1)], dim=1)  # (B x count, 5): image index, box
        return roi_align(level, boxes, size, spatial_scale=1 / stride, sampling_ratio=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.detector.backbone(x)  # levels "0"-"3", "pool": (B, C, H / r_l, W / r_l)
        first = next(iter(features.values()))
        stride = x.shape[-1] / first.shape[-1]
        objectness, deltas = self.detector.rpn.head(list(features.values()))  # per level (B, A, h, w), (B, 4A, h, w)
        heads = self.detector.roi_heads
        boxes = heads.box_predictor(heads.box_head(self._rois(first, stride, self.proposals, BOX_ROI_SIZE)))
        outputs = [*objectness, *deltas, *boxes]
        if heads.has_mask():
            rois = self._rois(first, stride, self.detections, MASK_ROI_SIZE)  # (B x detections, C, 14, 14)
            outputs.append(heads.mask_predictor(heads.mask_head(rois)))  # (B x detections, K + 1, 28, 28)
        return torch.cat([output.flatten() for output in outputs])

"""COCO's own formats for what a detector predicts: results (what pycocotools' ``COCO.loadRes`` and ``COCOeval`` read)
and, for data without an annotation file of its own, the split's ground truth as a COCO instances file.

Boxes are ``[x, y, width, height]`` in pixels; masks are RLE (``pycocotools.mask.encode``, counts as text); category
ids are the data's own (a COCO file's ids, or the labels 1..K where the data has no file).
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

__all__ = ["coco_ground_truth", "coco_results", "encode_mask", "xywh"]


def xywh(boxes: torch.Tensor) -> list[list[float]]:
    """(N, 4) x1, y1, x2, y2 -> COCO's [x, y, width, height] per box."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=1).tolist()


def encode_mask(mask: torch.Tensor) -> dict:
    """An (H, W) mask as COCO's RLE, its counts as text (JSON)."""
    rle = mask_utils.encode(np.asfortranarray(mask.to(torch.uint8).cpu().numpy()))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def coco_results(image_id: int, detection: dict, category_ids: dict[int, int]) -> list[dict]:
    """One image's detections (``boxes`` (N, 4) x1, y1, x2, y2, ``labels`` 1..K, ``scores``, ``masks`` (N, H, W)
    when segmenting) as COCO results records: ``image_id``, ``category_id``, ``bbox``, ``score``, ``segmentation``."""
    masks = detection.get("masks")
    records = []
    for k, (box, label, score) in enumerate(
        zip(xywh(detection["boxes"]), detection["labels"].tolist(), detection["scores"].tolist())
    ):
        record = {"image_id": int(image_id), "category_id": category_ids[label], "bbox": [round(v, 2) for v in box],
                  "score": round(score, 5)}  # fmt: skip
        if masks is not None:
            record["segmentation"] = encode_mask(masks[k])
        records.append(record)
    return records


def coco_ground_truth(
    images: list[tuple[int, int, int, dict]], classes: tuple[str, ...], category_ids: dict[int, int]
) -> dict:
    """A COCO instances file of ``images`` ((image_id, height, width, target) each, the target's ``boxes``, ``labels``
    and, when segmenting, ``masks``), its categories named by ``classes`` (labels 1..K)."""
    annotations = []
    for image_id, _, _, target in images:
        masks = target.get("masks")
        for k, (box, label) in enumerate(zip(xywh(target["boxes"]), target["labels"].tolist())):
            annotation = {"id": len(annotations) + 1, "image_id": int(image_id), "category_id": category_ids[label],
                          "bbox": box, "area": box[2] * box[3], "iscrowd": 0}  # fmt: skip
            if masks is not None:
                annotation["segmentation"] = encode_mask(masks[k] > 0)
                annotation["area"] = float(masks[k].gt(0).sum())
            annotations.append(annotation)
    return {
        "images": [{"id": int(i), "height": int(h), "width": int(w)} for i, h, w, _ in images],
        "annotations": annotations,
        "categories": [{"id": category_ids[k + 1], "name": name} for k, name in enumerate(classes)],
    }

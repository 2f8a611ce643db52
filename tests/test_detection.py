"""Detection and instance segmentation: FPN / HorFPN necks over timm backbones in torchvision's R-CNNs, COCO mAP,
the scenes' instances, the COCO-format reader and its errors, the CLI end to end."""

import contextlib
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from backbones import FAMILIES
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import MeanAveragePrecision

from hornet.analysis.measure.complexity import count_complexity
from hornet.cli import main
from hornet.data import COCODataModule
from hornet.data.fashion_mnist import CLASSES, DEBIAN_FASHION_MNIST, load_split
from hornet.data.scenes import FOREGROUND, MIN_INSTANCE_PIXELS, SceneSpec, generate_scenes, scene_instances
from hornet.lit.detection import DetectionModule, coco_scores
from hornet.lit.recipe import Recipe
from hornet.models.detector import NECKS, DetectorCost, DetectorSpec, create_detector, create_neck
from hornet.models.segmentor import create_feature_backbone

ROOT = Path(__file__).resolve().parents[1]
HAS_FASHION_MNIST = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")
SMOKE = dict(channels=64, anchor_scale=4, box_head_width=256, mask_head_width=64, mask_head_convs=2,
             rois_per_image=32, proposals_train=300, proposals_test=100, detections_per_image=20)  # fmt: skip


@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_neck_over_every_backbone_family_shapes_and_gradients(backbone):
    family = FAMILIES[backbone]
    body = create_feature_backbone(backbone, in_chans=family["in_chans"], img_size=64, **family["kwargs"])
    x = torch.randn(2, family["in_chans"], 64, 64)
    strides = body.feature_info.reduction()
    for neck_name in NECKS:
        neck = create_neck(body.feature_info.channels(), 32, neck_name)
        levels = neck(dict(enumerate(body(x))))
        assert list(levels) == [0, 1, 2, 3, "pool"], neck_name
        for level, stride in zip(levels.values(), [*strides, strides[-1] * 2]):
            assert level.shape == (2, 32, -(-64 // stride), -(-64 // stride)), (neck_name, level.shape)
        sum(level.square().mean() for level in levels.values()).backward()
        first = next(body.parameters())  # gradients reach the stem through the neck
        assert first.grad is not None and first.grad.abs().sum() > 0, (backbone, neck_name)
        body.zero_grad()


@pytest.mark.parametrize("mixer", ["dw7", "gf"])
def test_horfpn_replaces_every_output_conv_by_a_bare_gnconv(mixer):
    neck = create_neck([16, 32, 64, 128], 32, "horfpn_7x7" if mixer == "dw7" else "horfpn_gf")
    dense_3x3 = [m for m in neck.layer_blocks.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert all(m.groups == m.in_channels for m in dense_3x3)  # only the GF's depthwise local branch is 3x3
    block = neck.layer_blocks[0]
    assert block.gnconv.order == 2 and isinstance(block.norm, torch.nn.Identity)  # no norm, no activation


@pytest.mark.parametrize(
    "backbone,img_size,in_chans,fpn_gmacs,horfpn_gmacs",
    [
        ("hornet_micro_gf", 64, 1, 0.013025, 0.006965),  # the smoke suite: C = 64, stem stride 4
        ("hornet_small_7x7", 800, 3, 33.1776, 15.0284),  # the released HorFPN setting: C = 256 at 800 x 800
    ],
)
def test_horfpn_neck_costs_about_half_of_fpn(backbone, img_size, in_chans, fpn_gmacs, horfpn_gmacs):
    small = backbone == "hornet_micro_gf"
    macs, params = {}, {}
    for neck in NECKS:
        with torch.device("meta"):
            detector = create_detector(
                backbone, DetectorSpec(neck=neck, **(SMOKE if small else {})), num_classes=10 if small else 80,
                in_chans=in_chans, img_size=img_size, backbone_kwargs={"stem_stride": 4} if small else {},
            )  # fmt: skip
        counted = count_complexity(
            DetectorCost(detector), img_size, in_chans=in_chans, parts={"neck": "detector.backbone.neck"}
        )
        params[neck], macs[neck] = counted.parts["neck"][0], counted.parts["neck"][1] / 1e9
    assert macs["fpn"] == pytest.approx(fpn_gmacs, rel=1e-4)
    assert macs["horfpn_7x7"] == pytest.approx(horfpn_gmacs, rel=1e-4)
    assert macs["horfpn_gf"] < macs["horfpn_7x7"] < 0.55 * macs["fpn"]
    assert params["horfpn_7x7"] < 0.6 * params["fpn"]


def test_detector_cost_counts_the_same_on_the_meta_device_and_runs_for_real():
    kwargs = dict(num_classes=3, in_chans=1, img_size=64, backbone_kwargs={"stem_stride": 4})
    spec = DetectorSpec(**SMOKE)
    with torch.device("meta"):
        meta = count_complexity(DetectorCost(create_detector("hornet_micro_gf", spec, **kwargs)), 64, in_chans=1)
    real = DetectorCost(create_detector("hornet_micro_gf", spec, **kwargs))
    assert count_complexity(real, 64, in_chans=1).macs == meta.macs
    out = real(torch.randn(2, 1, 64, 64))  # a batch of 2: every RoI count is per image
    rpn = 3 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1) * 5  # objectness + 4 deltas per anchor, 3 anchors, 5 levels
    boxes = 100 * (4 + 4 * 4)  # 100 proposals: 4 class scores + 4 x 4 box deltas
    masks = 20 * 4 * 28 * 28  # 20 detections: a 28 x 28 mask per class
    assert out.shape == (2 * (rpn + boxes + masks),)


def test_map_of_a_perfect_prediction_is_one():
    metric = MeanAveragePrecision(iou_type=("bbox", "segm"), backend="pycocotools", class_metrics=True)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 2:10, 3:12], masks[1, 15:30, 15:25], masks[2, 0:5, 20:31] = True, True, True
    boxes = torch.tensor([[3.0, 2, 12, 10], [15, 15, 25, 30], [20, 0, 31, 5]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 1]), "masks": masks}
    metric.update([{**target, "scores": torch.tensor([0.9, 0.8, 0.7])}], [target])
    scores = coco_scores(metric, ("shirt", "bag"))
    assert scores["bbox_mAP"] == 1 and scores["segm_mAP"] == 1 and scores["bbox_AP50"] == 1
    assert scores["bbox_AP/shirt"] == 1 and scores["segm_AP/bag"] == 1
    assert "bbox_APl" not in scores  # no large object: COCO's -1 is left out

    half = MeanAveragePrecision(iou_type="bbox", backend="pycocotools")
    half.update([{"boxes": boxes[:1], "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}], [target])
    assert 0 < coco_scores(half)["bbox_mAP"] < 1  # two of the three objects missed


@needs_fashion_mnist
def test_scene_instances_match_the_pasted_items():
    items, classes = load_split(DEBIAN_FASHION_MNIST, "test")
    items, classes = items[:200], classes[:200]
    single = SceneSpec(size=64, items=(1, 1), item_sizes=(20, 40), max_overlap=0.3)
    scenes, placements = generate_scenes(items, classes, 5, single, seed=1)
    for n, [(item, top, left, side)] in enumerate(placements):
        resized = torch.nn.functional.interpolate(
            items[item][None, None].float(), size=(side, side), mode="bilinear", antialias=True
        )[0, 0].round() / 255  # fmt: skip
        garment = torch.zeros(64, 64, dtype=torch.bool)
        garment[top : top + side, left : left + side] = resized >= FOREGROUND
        target = scene_instances(scenes["instances"][n], scenes["classes"][n])
        rows, cols = garment.any(dim=1).nonzero()[:, 0], garment.any(dim=0).nonzero()[:, 0]
        box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]  # pixel edges
        assert target["labels"].tolist() == [int(classes[item]) + 1]
        assert torch.equal(target["masks"][0].bool(), garment)
        assert target["boxes"][0].tolist() == [float(v) for v in box]

    crowded = SceneSpec(size=64, items=(2, 4), item_sizes=(20, 40), max_overlap=0.3)
    scenes, placements = generate_scenes(items, classes, 20, crowded, seed=2)
    for n, pasted in enumerate(placements):
        target = scene_instances(scenes["instances"][n], scenes["classes"][n])
        masks = target["masks"].bool()
        assert 1 <= len(masks) <= len(pasted) and (masks.sum(dim=0) <= 1).all()  # disjoint: the topmost item's
        assert (masks.sum(dim=(1, 2)) >= MIN_INSTANCE_PIXELS).all()
        for mask, label in zip(masks, target["labels"]):
            assert (scenes["labels"][n][mask] == label).all()  # the label map agrees (class + 1)


def _coco_tree(root: Path, *, annotations: dict | None = None) -> Path:
    """A COCO-format tree: 4 training and 2 test images; categories with ids 1, 3, 7; polygons, an RLE and a crowd."""
    rng = np.random.default_rng(0)
    categories = [{"id": 7, "name": "kite"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    for split, count in (("train2017", 4), ("val2017", 2)):
        (root / split).mkdir(parents=True)
        images, anns = [], []
        for i in range(count):
            height, width = 40 + 8 * i, 56
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / split / f"{i}.jpg")
            images.append({"id": 10 + i, "file_name": f"{i}.jpg", "height": height, "width": width})
            x, y, w, h = 4 + i, 6, 20, 12
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            anns.append({"id": 100 + 2 * i, "image_id": 10 + i, "category_id": [1, 3, 7][i % 3],
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": [polygon]})  # fmt: skip
            block = np.zeros((height, width), dtype=np.uint8, order="F")
            block[20:30, 30:50] = 1
            rle = coco_mask.encode(block)
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": 101 + 2 * i, "image_id": 10 + i, "category_id": 7, "bbox": [30, 20, 20, 10],
                         "area": 200, "iscrowd": int(i == 1), "segmentation": rle})  # fmt: skip
        (root / "annotations").mkdir(exist_ok=True)
        content = {"images": images, "annotations": anns, "categories": categories}
        if annotations and split in annotations:
            content = annotations[split](content)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return root


def test_coco_reader_round_trips_a_generated_tree(tmp_path):
    data = COCODataModule(root=str(_coco_tree(tmp_path)), val_size=1, num_workers=0, batch_size=2)
    assert data.classes == ("person", "car", "kite") and data.num_classes == 3  # ordered by category id
    data.setup("test")
    image, target = data.test_set[0]  # image 10: a polygon of category 1 and an RLE of category 7
    assert image.shape == (3, 40, 56)
    assert target["boxes"].tolist() == [[4.0, 6.0, 24.0, 18.0], [30.0, 20.0, 50.0, 30.0]]
    assert target["labels"].tolist() == [1, 3] and target["iscrowd"].tolist() == [0, 0]
    assert target["masks"].shape == (2, 40, 56) and target["masks"][1].sum() == 200
    assert target["masks"][1][20:30, 30:50].all() and target["masks"][0][6:18, 4:24].all()
    data.setup("fit")
    assert len(data.train_set) == 3 and len(data.val_set) == 1
    crowd = next(data.train_set[k][1] for k in range(3) if data.train_set.image_ids[k] == 11)
    assert len(crowd["labels"]) == 1  # the crowd annotation is not trained on
    images, targets = data.collate_fn([data.val_set[0], data.test_set[1]])
    assert isinstance(images, list) and len(targets) == 2  # images of different sizes stay a list


@pytest.mark.parametrize(
    "break_it,message",
    [
        (lambda c: {**c, "annotations": [{**c["annotations"][0], "bbox": [50, 6, 30, 12]}]}, "outside the 56x40"),
        (lambda c: {**c, "annotations": [{**c["annotations"][0], "bbox": [4, 6, 0, 12]}]}, "zero area"),
        (lambda c: {**c, "annotations": [{**c["annotations"][0], "category_id": 99}]}, "category_id 99"),
        (lambda c: {"images": c["images"]}, "not a COCO instances file"),
    ],
)
def test_bad_coco_annotations_are_one_line_and_exit_2(tmp_path, capsys, break_it, message):
    root = _coco_tree(tmp_path / "coco", annotations={"train2017": break_it})
    config = {
        "model": {"class_path": "hornet.lit.DetectionModule", "init_args": {"detector": SMOKE}},
        "data": {"class_path": "hornet.data.COCODataModule", "init_args": {"root": str(root), "val_size": 1}},
    }
    status = main(["fit", "--config", json.dumps(config), "--runs_dir", str(tmp_path), "--run_name", "bad"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and message in err[-1] and "Traceback" not in "\n".join(err), err


def test_invalid_boxes_skip_drops_them(tmp_path):
    broken = lambda c: {**c, "annotations": [{**c["annotations"][0], "bbox": [4, 6, 0, 12]}, *c["annotations"][1:]]}  # noqa: E731
    root = _coco_tree(tmp_path, annotations={"train2017": broken})
    data = COCODataModule(root=str(root), val_size=1, num_workers=0, invalid_boxes="skip")
    data.setup("fit")
    ids = data.train_set.image_ids + data.val_set.image_ids
    everything = data.train_set, data.val_set
    first = next(ds[ds.image_ids.index(10)][1] for ds in everything if 10 in ds.image_ids)
    assert 10 in ids and first["labels"].tolist() == [3]  # image 10 keeps only its valid (RLE) annotation
    strict = COCODataModule(root=str(root), val_size=1, num_workers=0)  # the same file, read and checked once
    with pytest.raises(ValueError, match="has zero area"):  # skipping in one module does not silence another
        strict.setup("fit")


def test_step_schedule_decays_tenfold_at_8_and_11_of_12_epochs():
    from test_training import _fake_trainer

    module = DetectionModule(
        num_classes=3, in_chans=1, img_size=64, backbone_kwargs={"stem_stride": 4},
        recipe=Recipe(lr=1e-3, warmup_epochs=0.5, schedule="step"), detector=DetectorSpec(**SMOKE),
    )  # fmt: skip
    module._trainer = _fake_trainer(steps=1200, epochs=12, batches=100)
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert schedule(49) < 1 and schedule(50) == 1 and schedule(799) == 1
    assert schedule(800) == pytest.approx(0.1) and schedule(1099) == pytest.approx(0.1)
    assert schedule(1100) == pytest.approx(0.01)


@needs_fashion_mnist
def test_a_short_detection_fit_writes_map_and_predict_draws_detections(tmp_path):
    common = [
        "--config", str(ROOT / "experiments/detection/scenes.yaml"), "--data.init_args.train_scenes", "96",
        "--data.init_args.val_scenes", "32", "--data.init_args.test_scenes", "32", "--data.init_args.cache_dir",
        str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1",
        "--runs_dir", str(tmp_path), "--run_name", "det",
    ]  # fmt: skip
    by_name = ["--runs_dir", str(tmp_path), "--run_name", "det"]  # test and predict find the run's own config
    assert main(["fit", *common]) == 0 and main(["test", *by_name]) == 0
    rows = list(csv.DictReader((tmp_path / "det" / "metrics.csv").open()))
    validated = next(row for row in rows if row.get("val/bbox_mAP"))
    tested = rows[-1]
    for value in (
        validated["val/bbox_mAP"],
        validated["val/segm_mAP"],
        tested["test/bbox_mAP"],
        tested["test/segm_AP50"],
    ):
        assert 0 <= float(value) <= 1
    assert any(key.startswith("test/bbox_AP/") for key in tested)  # per class at test
    assert main(["predict", *by_name]) == 0
    predictions = tmp_path / "det" / "predictions"
    assert len(list(predictions.glob("0000*.png"))) == 32 and (predictions / "sheet.png").is_file()
    # COCO's own tool reads what predict wrote (results, and the scenes' ground truth) and scores what test scored
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(predictions / "ground_truth.json"))
        detections = truth.loadRes(str(predictions / "detections.json"))
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(truth, detections, iou_type)
            evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
            ours = float(tested[f"test/{iou_type}_mAP"])
            print(f"COCOeval {iou_type} mAP {evaluation.stats[0]:.4f}, hornet test {ours:.4f}", file=sys.stderr)
            assert evaluation.stats[0] == pytest.approx(float(tested[f"test/{iou_type}_mAP"]), abs=1e-3), iou_type
    assert {c["name"] for c in truth.dataset["categories"]} == set(CLASSES) and len(truth.getImgIds()) == 32


def test_coco_results_and_ground_truth_score_as_torchmetrics_does(tmp_path):
    """hornet predict's COCO files (hornet.data.coco_format) under pycocotools' COCOeval give the mAP that hornet's
    test metric (torchmetrics, pycocotools backend) gives the same detections: boxes, masks, categories, ids."""
    from hornet.data.coco_format import coco_ground_truth, coco_results

    generator = torch.Generator().manual_seed(0)
    metric = MeanAveragePrecision(iou_type=("bbox", "segm"), backend="pycocotools")
    truth, results, categories = [], [], {1: 7, 2: 11, 3: 42}  # the data's own category ids
    for image_id in range(6):
        corners = torch.randint(0, 40, (3, 2), generator=generator).float()
        boxes = torch.cat([corners, corners + torch.randint(8, 24, (3, 2), generator=generator)], dim=1)
        masks = torch.zeros(3, 64, 64, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = True
        labels = torch.randint(1, 4, (3,), generator=generator)
        target = {"boxes": boxes, "labels": labels, "masks": masks}
        # real-valued box shifts and noisy masks: no IoU lands exactly on one of COCO's thresholds (torchmetrics keeps
        # them in float32, which would decide such a tie otherwise than COCOeval)
        shift = 6 * torch.rand(3, 4, generator=generator) - 3
        noise = torch.rand(3, 64, 64, generator=generator) < 0.15
        detection = {
            "boxes": (boxes + shift).clamp(0, 64), "labels": torch.where(torch.arange(3) == 2, 1, labels),
            "scores": torch.rand(3, generator=generator), "masks": masks.roll(1, dims=2) & ~noise,
        }  # fmt: skip
        metric.update([detection], [target])
        truth.append((image_id, 64, 64, target))
        results += coco_results(image_id, detection, categories)
    expected = metric.compute()
    (tmp_path / "truth.json").write_text(json.dumps(coco_ground_truth(truth, ("a", "b", "c"), categories)))
    (tmp_path / "results.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "truth.json"))
        detections = coco.loadRes(str(tmp_path / "results.json"))
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(coco, detections, iou_type)
            evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
            theirs = float(expected[f"{iou_type}_map"])
            print(f"COCOeval {iou_type} mAP {evaluation.stats[0]:.4f}, torchmetrics {theirs:.4f}", file=sys.stderr)
            assert 0.1 < evaluation.stats[0] < 0.9, iou_type  # a score far from 0 and 1: the comparison means something
            assert evaluation.stats[0] == pytest.approx(float(expected[f"{iou_type}_map"]), abs=1e-3), iou_type

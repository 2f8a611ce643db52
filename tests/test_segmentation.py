"""Semantic segmentation: decoders over timm feature pyramids, mmseg's mIoU, the scenes and ADE20K data, the CLI."""

import csv
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from backbones import FAMILIES
from PIL import Image

from hornet.analysis.measure.complexity import count_complexity
from hornet.cli import main
from hornet.data import ADE20KDataModule, FashionMNISTScenes
from hornet.data.base import IGNORE_INDEX
from hornet.data.fashion_mnist import DEBIAN_FASHION_MNIST, load_split
from hornet.data.scenes import EDGE, FOREGROUND, SceneSpec, generate_scenes, held_out_items
from hornet.lit.recipe import Recipe
from hornet.lit.segmentation import SegmentationModule, segmentation_metrics
from hornet.models.segmentor import create_segmentor, load_backbone_weights, slide_inference

ROOT = Path(__file__).resolve().parents[1]
HAS_FASHION_MNIST = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs Debian's dataset-fashion-mnist")

DECODERS = ("upernet", "horfpn_7x7", "horfpn_gf", "semantic_fpn")


@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_decoder_over_every_backbone_family_shapes_and_gradients(backbone):
    family = FAMILIES[backbone]
    x = torch.randn(2, family["in_chans"], 64, 64)
    for decoder in DECODERS:
        model = create_segmentor(
            backbone, num_classes=5, in_chans=family["in_chans"], img_size=64, decoder=decoder, channels=32,
            aux_channels=16, backbone_kwargs=family["kwargs"],
        )  # fmt: skip
        logits, aux = model.forward_train(x)
        finest = 64 // model.backbone.feature_info.reduction()[0]
        assert logits.shape == (2, 5, finest, finest) and aux.shape[:2] == (2, 5), decoder
        assert model(x).shape == (2, 5, 64, 64)
        (logits.square().mean() + aux.square().mean()).backward()
        first = next(p for p in model.backbone.parameters())  # the stem: gradients reach the bottom of the backbone
        assert first.grad is not None and first.grad.abs().sum() > 0, (backbone, decoder)


@pytest.mark.parametrize(
    "backbone,img_size,in_chans,num_classes,upernet_gmacs,horfpn_gmacs",
    [
        ("hornet_micro_gf", 64, 1, 11, 0.052068, 0.025485),  # the smoke suite: C = 64, stem stride 4, the scenes
        ("hornet_tiny_7x7", 512, 3, 150, 210.584, 97.384),  # the released ADE20K setting: C = 512 at a 512 crop
    ],
)
def test_horfpn_decoder_costs_about_half_of_upernet(
    backbone, img_size, in_chans, num_classes, upernet_gmacs, horfpn_gmacs
):
    macs = {}
    small = backbone == "hornet_micro_gf"
    for decoder in ("upernet", "horfpn_7x7", "horfpn_gf"):
        with torch.device("meta"):
            model = create_segmentor(
                backbone, num_classes=num_classes, in_chans=in_chans, img_size=img_size, decoder=decoder,
                channels=64 if small else 512, backbone_kwargs={"stem_stride": 4} if small else {},
            )  # fmt: skip
        counted = count_complexity(model, img_size, in_chans=in_chans, parts={"decoder": "decode_head"})
        macs[decoder] = counted.parts["decoder"][1] / 1e9
    assert macs["upernet"] == pytest.approx(upernet_gmacs, rel=1e-4)
    assert macs["horfpn_7x7"] == pytest.approx(horfpn_gmacs, rel=1e-4)
    assert macs["horfpn_gf"] < macs["horfpn_7x7"] < 0.5 * macs["upernet"]


def test_miou_of_a_perfect_prediction_is_one():
    metrics = segmentation_metrics(4)
    labels = torch.tensor([[[0, 1], [2, 3]], [[3, 2], [IGNORE_INDEX, 0]]])
    predictions = labels.clamp(max=3)
    for metric in metrics.values():
        metric.update(predictions, labels)
    assert metrics["mIoU"].compute() == 1 and metrics["aAcc"].compute() == 1


def test_miou_matches_mmseg_on_a_hand_computed_example():
    # 4 classes; class 3 is in neither prediction nor label (left out); the last pixel is ignored.
    # Per class over the 5 labelled pixels: IoU0 = 1/3 (pred {0,4}, label {0,1}), IoU1 = 2/3 (pred {1,2,3}, label
    # {2,3}), IoU2 = 0 (label {4}, predicted 0) -> mIoU = (1/3 + 2/3 + 0) / 3 = 1/3; aAcc = 3/5; mAcc = (1/2+1+0)/3.
    labels = torch.tensor([[0, 0, 1, 1, 2, IGNORE_INDEX]])
    predictions = torch.tensor([[0, 1, 1, 1, 0, 2]])
    metrics = segmentation_metrics(4)
    for metric in metrics.values():
        metric.update(predictions, labels)
    assert metrics["mIoU"].compute().item() == pytest.approx(1 / 3)
    assert metrics["aAcc"].compute().item() == pytest.approx(3 / 5)
    assert metrics["mAcc"].compute().item() == pytest.approx(0.5)
    per_class = metrics["IoU"].compute()
    torch.testing.assert_close(per_class[:3], torch.tensor([1 / 3, 2 / 3, 0.0]))
    assert per_class[3].isnan()  # absent from both: NaN, as mmseg reports it


def test_slide_inference_equals_whole_image_for_a_pointwise_network():
    network = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 50, 37)
    torch.testing.assert_close(slide_inference(network, x, crop=16, stride=11, num_classes=4), network(x))


@needs_fashion_mnist
def test_scenes_are_deterministic_and_labels_match_the_pasted_items():
    items, classes = load_split(DEBIAN_FASHION_MNIST, "test")
    items, classes = items[:200], classes[:200]
    spec = SceneSpec(size=64, items=(2, 4), item_sizes=(20, 40), max_overlap=0.3)
    scenes, placements = generate_scenes(items, classes, 6, spec, seed=3)
    again, _ = generate_scenes(items, classes, 6, spec, seed=3)
    other, _ = generate_scenes(items, classes, 6, spec, seed=4)
    images, labels = scenes["images"], scenes["labels"]
    assert all(torch.equal(scenes[key], again[key]) for key in scenes) and not torch.equal(images, other["images"])
    for n, pasted in enumerate(placements):
        expected = torch.zeros(64, 64, dtype=torch.uint8)
        for item, top, left, side in pasted:  # bottom to top: a later item covers an earlier one
            resized = torch.nn.functional.interpolate(
                items[item][None, None].float(), size=(side, side), mode="bilinear", antialias=True
            )[0, 0].round() / 255  # fmt: skip
            window = expected[top : top + side, left : left + side]
            window[resized >= EDGE] = IGNORE_INDEX
            window[resized >= FOREGROUND] = int(classes[item]) + 1
        assert torch.equal(labels[n], expected), n
        assert set(labels[n].unique().tolist()) <= {0, IGNORE_INDEX, *(int(classes[i]) + 1 for i, *_ in pasted)}
    assert (labels == 0).float().mean() > 0.5  # mostly background, as a scene with 2-4 garments is


def test_scene_splits_share_no_source_image():
    train, val = held_out_items(60000, 5000, split_seed=0)
    assert len(train) == 55000 and len(val) == 5000 and not set(train.tolist()) & set(val.tolist())
    assert np.array_equal(held_out_items(60000, 5000, split_seed=0)[1], val)  # fixed by the split seed


@needs_fashion_mnist
def test_scenes_datamodule_caches_what_it_generates(tmp_path):
    from hornet.data import scenes

    data = FashionMNISTScenes(cache_dir=str(tmp_path), train_scenes=8, val_scenes=4, test_scenes=4, img_size=48)
    data.setup("fit")
    x, y = data.train_set[0]
    assert x.shape == (1, 48, 48) and y.shape == (48, 48) and y.dtype == torch.int64
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("train-") and files[1].startswith("val-")
    scenes.SCENES.clear()  # from the disk cache now: the same scenes
    again = FashionMNISTScenes(cache_dir=str(tmp_path), train_scenes=8, val_scenes=4, test_scenes=4, img_size=48)
    again.setup("fit")
    assert torch.equal(again.train_set[0][0], x)


def _ade_tree(root: Path, *, mismatched: bool = False) -> Path:
    """A small ADE20K-layout tree: 6 training and 2 validation images of different sizes, labels 0-3 and 255."""
    rng = np.random.default_rng(0)
    for folder, count in (("training", 6), ("validation", 2)):
        (root / "images" / folder).mkdir(parents=True)
        (root / "annotations" / folder).mkdir(parents=True)
        for i in range(count):
            height, width = 40 + 8 * i, 56 - 4 * i
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
                root / "images" / folder / f"ADE_{folder}_{i:04d}.jpg"
            )
            label = rng.integers(0, 4, (height, width), dtype=np.uint8)
            label[0, 0] = 255
            if mismatched and i == 0:
                label = label[:-1]
            Image.fromarray(label).save(root / "annotations" / folder / f"ADE_{folder}_{i:04d}.png")
    return root


def test_ade20k_layout_reduce_zero_label_crops_and_padding(tmp_path):
    root = _ade_tree(tmp_path / "ade")
    data = ADE20KDataModule(
        root=str(root), img_size=32, scale=(64, 32), val_size=2, batch_size=2, eval_batch_size=2, num_workers=0
    )
    data.setup("fit")
    assert len(data.train_set) == 4 and len(data.val_set) == 2
    x, y = data.train_set[0]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    raw = np.array(Image.open(data.train_set.pairs[0][1]))
    assert set(y.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX} and 0 in raw  # 0 -> ignored, 1-3 -> 0-2
    images, labels = next(iter(data.val_dataloader()))  # two sizes in one batch: padded with ignored labels
    assert images.shape[0] == 2 and labels.shape == images.shape[:1] + images.shape[2:]
    assert (labels == IGNORE_INDEX).any()
    data.setup("test")
    assert len(data.test_set) == 2


def test_a_label_map_of_another_size_is_one_line_exit_2(tmp_path, capsys):
    root = _ade_tree(tmp_path / "ade", mismatched=True)
    args = [
        "fit", "--config", str(ROOT / "experiments/segmentation/scenes.yaml"),
        "--data", "hornet.data.ADE20KDataModule", "--data.init_args.root", str(root), "--data.init_args.img_size",
        "32", "--data.init_args.scale", "[64, 32]", "--data.init_args.val_size", "2", "--data.init_args.num_workers",
        "0", "--data.init_args.batch_size", "2", "--model.init_args.backbone", "resnet18",
        "--model.init_args.backbone_kwargs", "{}", "--trainer.max_epochs", "1", "--runs_dir", str(tmp_path),
        "--run_name", "bad",
    ]  # fmt: skip
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hornet: error:")]
    assert len(errors) == 1 and "must have its image's size" in errors[0]


def test_labels_outside_the_classes_are_an_error():
    module = SegmentationModule(backbone="resnet18", num_classes=3, img_size=32, channels=16, aux_channels=None)
    with pytest.raises(ValueError, match=r"label values \[5\] are outside \[0, 3\)"):
        module._check_labels(torch.tensor([[0, 1, 2, IGNORE_INDEX, 5]]))


@pytest.mark.parametrize("backbone", ["levit_128s", "hornet_tiny_7x7_reference"])
def test_a_backbone_without_a_four_level_feature_pyramid_is_an_error(backbone):
    with pytest.raises(ValueError, match="cannot give a feature pyramid"):
        create_segmentor(backbone, num_classes=3, img_size=64)


def test_backbone_starts_from_a_classification_checkpoint(tmp_path):
    classifier = timm.create_model("hornet_micro_gf", num_classes=10, in_chans=1, img_size=64, stem_stride=4)
    path = tmp_path / "fit.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in classifier.state_dict().items()}}, path)
    model = create_segmentor(
        "hornet_micro_gf", num_classes=5, in_chans=1, img_size=64, channels=16, backbone_kwargs={"stem_stride": 4}
    )
    load_backbone_weights(model.backbone, path)
    for key, value in model.backbone.model.state_dict().items():
        torch.testing.assert_close(value, classifier.state_dict()[key], rtol=0, atol=0)
    other = create_segmentor("convnext_atto", num_classes=5, img_size=64, channels=16)
    with pytest.raises(ValueError, match="missing keys"):
        load_backbone_weights(other.backbone, path)


@needs_fashion_mnist
def test_fit_test_predict_on_scenes_through_the_cli(tmp_path, capsys):
    common = [
        "--config", str(ROOT / "experiments/segmentation/scenes.yaml"), "--data.init_args.train_scenes", "64",
        "--data.init_args.val_scenes", "16", "--data.init_args.test_scenes", "16", "--data.init_args.cache_dir",
        str(tmp_path / "cache"), "--data.init_args.batch_size", "16", "--model.init_args.decoder", "horfpn_gf",
        "--trainer.enable_progress_bar", "false", "--runs_dir", str(tmp_path), "--run_name", "seg",
    ]  # fmt: skip
    assert main(["fit", *common, "--trainer.max_epochs", "1"]) == 0
    rows = list(csv.DictReader((tmp_path / "seg" / "metrics.csv").open()))
    assert any(0 <= float(r["val/mIoU"]) <= 1 for r in rows if r.get("val/mIoU"))
    assert main(["test", "--runs_dir", str(tmp_path), "--run_name", "seg"]) == 0  # found by name: the run's config
    assert f"config from {tmp_path / 'seg' / 'config.yaml'}" in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "seg" / "metrics.csv").open()))
    tested = rows[-1]
    assert 0 <= float(tested["test/mIoU"]) <= 1 and 0 <= float(tested["test/aAcc"]) <= 1
    assert "test/IoU/background" in tested and "test/IoU/T-shirt-top" in tested
    assert main(["predict", "--runs_dir", str(tmp_path), "--run_name", "seg"]) == 0
    masks = sorted((tmp_path / "seg" / "predictions").glob("0*.png"))
    assert len(masks) == 16 and (tmp_path / "seg" / "predictions" / "sheet.png").is_file()
    with Image.open(masks[0]) as mask:
        assert mask.mode == "P" and mask.size == (64, 64) and np.array(mask).max() < 11  # class ids, coloured


@needs_fashion_mnist
def test_a_three_epoch_fit_beats_the_majority_class(tmp_path):
    common = [
        "--config", str(ROOT / "experiments/segmentation/scenes.yaml"), "--data.init_args.train_scenes", "1000",
        "--data.init_args.val_scenes", "200", "--data.init_args.test_scenes", "500", "--data.init_args.cache_dir",
        str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "3",
        "--runs_dir", str(tmp_path), "--run_name", "seg",
    ]  # fmt: skip
    assert main(["fit", *common]) == 0 and main(["test", *common]) == 0
    tested = list(csv.DictReader((tmp_path / "seg" / "metrics.csv").open()))[-1]
    data = FashionMNISTScenes(test_scenes=500, cache_dir=str(tmp_path / "cache"))
    labels = data.scenes("test")["labels"]
    majority = segmentation_metrics(11)["mIoU"]
    majority.update(torch.zeros_like(labels, dtype=torch.long), labels.long())  # everything background
    baseline = majority.compute().item()
    assert baseline == pytest.approx(0.0707, abs=0.005)  # background's IoU (about 0.78) over 11 classes
    assert float(tested["test/mIoU"]) > baseline + 0.10  # measured: 0.225 vs 0.070 (seed 0, 2026-12-02; 28 s)


@needs_fashion_mnist
def test_the_horfpn_suite_records_decoder_cost_and_miou_and_reports_test_miou(tmp_path, capsys):
    suite_dir = tmp_path / "suite"
    args = [
        "fit", "--config", str(ROOT / "experiments/horfpn_ablation.yaml"), "--ablation.output_dir", str(suite_dir),
        "--ablation.seeds", "[0]", "--ablation.workers", "1", "--data.init_args.train_scenes", "32",
        "--data.init_args.val_scenes", "16", "--data.init_args.test_scenes", "16", "--data.init_args.cache_dir",
        str(tmp_path / "cache"), "--trainer.max_epochs", "1",
    ]  # fmt: skip
    for only in ("upernet", "horfpn_7x7"):  # two of the three variants
        assert main([*args, "--ablation.only", only]) == 0
    rows = list(csv.DictReader((suite_dir / "results.csv").open()))
    assert [r["variant"] for r in rows] == ["upernet", "horfpn_7x7"] and all(r["status"] == "ok" for r in rows)
    decoder = {r["variant"]: float(r["decoder_macs"]) for r in rows}
    assert decoder == {"upernet": 52068352.0, "horfpn_7x7": 25485312.0}  # as the cost test counts them
    assert all(0 <= float(r["best_val_mIoU"]) <= 1 and 0 <= float(r["test_mIoU"]) <= 1 for r in rows)
    assert not any(key.startswith("test_IoU") for key in rows[0])  # per-class IoU stays in each run's metrics.csv
    capsys.readouterr()
    assert main(["report", str(suite_dir), "--format", "csv"]) == 0
    table = capsys.readouterr().out
    assert "test_mIoU_%" in table and "decoder_MMACs" in table and "25.49" in table


def test_layer_decay_reaches_the_backbone_through_its_group_matcher():
    module = SegmentationModule(
        backbone="hornet_micro_gf", backbone_kwargs={"stem_stride": 4}, in_chans=1, num_classes=11, img_size=64,
        channels=16, aux_channels=None, recipe=Recipe(lr=1e-4, layer_decay=0.5),
    )  # fmt: skip
    settings = module._group_settings()
    names = {name for name, _ in module.backbone.named_parameters()}
    assert set(settings) == names  # every backbone parameter, by its name in the feature wrapper
    stem = settings["model.downsample_layers.0.0.weight"]
    last = next(value for name, value in settings.items() if name.startswith("model.stages.3."))
    assert stem[1] < last[1] <= 1.0 and stem[0] == 0.05  # deeper layers learn faster; conv weights decayed

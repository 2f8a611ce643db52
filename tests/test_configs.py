"""Configs: every file parses, recipes extend a base and state only what differs, overlays compose, and every paper
recipe keeps the global batch and lr its header states under every strategy overlay."""

import re
from pathlib import Path

import pytest
import yaml

from hornet.cli import main
from hornet.runs import class_args

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
RECIPES = sorted((EXPERIMENTS / "paper").glob("hornet_*.yaml"))
STRATEGIES = sorted((EXPERIMENTS / "strategies").glob("*.yaml"))
STATED = re.compile(r"^# Global batch (\d+) = .*?; lr ([0-9.]+e-\d+)", re.MULTILINE)


def _resolved(capsys, *configs: Path | str) -> dict:
    """The config `hornet fit --config ...` resolves to (bases, defaults and all)."""
    with pytest.raises(SystemExit) as done:
        main(["fit", *(arg for path in configs for arg in ("--config", str(path))), "--print_config"])
    assert done.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _stated(recipe: Path) -> tuple[int, float]:
    """(global batch, lr) as the recipe's header states them, or the header of the base it extends."""
    text = recipe.read_text()
    found = STATED.search(text)
    if found:
        return int(found[1]), float(found[2])
    return _stated(recipe.parent / yaml.safe_load(text)["base"])


# overlays -> the config their header gives them after (a suite's recipe, which an overlay changes in part)
OVERLAYS = {
    "scale/cpu_full.yaml": "order_ablation.yaml",
    "paper/imagenet_overlay.yaml": "order_ablation.yaml",
    "segmentation/scenes_long.yaml": "horfpn_ablation.yaml",
    "segmentation/ade20k_upernet.yaml": "horfpn_ablation.yaml",
    "detection/scenes_long.yaml": "horfpn_detection_ablation.yaml",
    "detection/coco_mask_rcnn_1x.yaml": "horfpn_detection_ablation.yaml",
}


@pytest.mark.parametrize("path", [ROOT / "lightning_cli.yaml", *sorted((ROOT / "experiments").rglob("*.yaml"))])
def test_every_config_parses(path, capsys):
    args = [] if path.name == "lightning_cli.yaml" else ["--config", str(path)]
    overlaid = OVERLAYS.get(str(path.relative_to(EXPERIMENTS))) if path.is_relative_to(EXPERIMENTS) else None
    if overlaid:
        args = ["--config", str(EXPERIMENTS / overlaid), *args]
    with pytest.raises(SystemExit) as done:
        main(["fit", *args, "--print_config"])
    assert done.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert class_args(config["model"])["backbone"] and config["data"]["class_path"].startswith("hornet.data.")


def test_configs_compose_later_wins(tmp_path, capsys):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model:\n  recipe:\n    lr: 0.1\n    weight_decay: 0.2\n")
    second.write_text("model:\n  recipe:\n    lr: 0.3\n    min_lr: ${.lr}\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(first), "--config", str(second), "--print_config"])
    recipe = class_args(yaml.safe_load(capsys.readouterr().out)["model"])["recipe"]
    assert (recipe["lr"], recipe["weight_decay"], recipe["min_lr"]) == (0.3, 0.2, 0.3)


def test_a_config_in_the_flat_layout_of_earlier_runs_still_loads(tmp_path, capsys):
    """Runs saved before the recipe and the detector were one object each (flat model.lr, model.neck, ...)."""
    flat = tmp_path / "old.yaml"
    flat.write_text("model:\n  lr: 0.1\n  drop_path_rate: 0.2\n  label_smoothing: 0.1\noptimizer: null\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(flat), "--print_config"])
    model = class_args(yaml.safe_load(capsys.readouterr().out)["model"])
    assert (model["recipe"]["lr"], model["recipe"]["drop_path_rate"], model["label_smoothing"]) == (0.1, 0.2, 0.1)
    detection = tmp_path / "old_detection.yaml"
    detection.write_text(
        "model:\n  class_path: hornet.lit.DetectionModule\n  init_args:\n    detector: faster_rcnn\n"
        "    neck: horfpn_gf\n    lr: 0.002\n"
    )
    scenes = EXPERIMENTS / "detection" / "scenes.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(scenes), "--config", str(detection), "--print_config"])
    model = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    detector = model["detector"]
    assert (detector["kind"], detector["neck"], model["recipe"]["lr"]) == ("faster_rcnn", "horfpn_gf", 0.002)
    assert detector["channels"] == 64  # the rest of scenes.yaml's detector stays


PAPER_1K = {  # docs/reference.md: drop path, clip, RandAugment magnitude
    "hornet_tiny_7x7": (0.2, 100, 9),
    "hornet_tiny_gf": (0.2, 1, 9),
    "hornet_small_7x7": (0.4, 5, 9),
    "hornet_small_gf": (0.4, 1, 12),
    "hornet_base_7x7": (0.5, 5, 9),
    "hornet_base_gf": (0.5, 1, 15),
}


@pytest.mark.parametrize("name", sorted(PAPER_1K))
def test_paper_imagenet_1k_recipes(name, capsys):
    config = _resolved(capsys, ROOT / "experiments" / "paper" / f"{name}.yaml")
    trainer, model, data = config["trainer"], class_args(config["model"]), config["data"]["init_args"]
    recipe = model["recipe"]
    drop_path, clip, magnitude = PAPER_1K[name]
    global_batch = trainer["devices"] * trainer["num_nodes"] * trainer["accumulate_grad_batches"] * data["batch_size"]
    assert global_batch == 4096 and recipe["lr"] == 4e-3 and recipe["lr_scaling"] == "linear"
    assert (recipe["drop_path_rate"], trainer["gradient_clip_val"]) == (drop_path, clip)
    assert data["auto_augment"] == f"rand-m{magnitude}-mstd0.5-inc1" and data["re_prob"] == 0.25
    assert (recipe["weight_decay"], recipe["warmup_epochs"], recipe["min_lr"], trainer["max_epochs"]) == (
        0.05,
        20,
        1e-6,
        300,
    )
    assert (model["mixup"], model["cutmix"], model["label_smoothing"], model["ema_decay"]) == (0.8, 1.0, 0.1, 0.9999)
    assert model["backbone"] == name and config["data"]["class_path"] == "hornet.data.ImageFolderDataModule"


def test_paper_large_22k_and_384_finetune_recipes(capsys):
    pre = _resolved(capsys, ROOT / "experiments" / "paper" / "hornet_large_gf_in22k.yaml")
    t, m, d = pre["trainer"], class_args(pre["model"]), pre["data"]["init_args"]
    r = m["recipe"]
    assert t["devices"] * t["num_nodes"] * t["accumulate_grad_batches"] * d["batch_size"] == 4096
    assert (t["max_epochs"], r["weight_decay"], r["warmup_epochs"], r["drop_path_rate"], t["gradient_clip_val"]) == (
        90, 0.1, 5, 0.2, 1,
    )  # fmt: skip
    assert m["ema_decay"] is None and d["val_size"] == 10000 and d["root"].endswith("imagenet22k")
    ft = _resolved(capsys, ROOT / "experiments" / "paper" / "hornet_large_gf_img384_ft1k.yaml")
    t, m, d = ft["trainer"], class_args(ft["model"]), ft["data"]["init_args"]
    r = m["recipe"]
    assert t["devices"] * t["num_nodes"] * t["accumulate_grad_batches"] * d["batch_size"] == 512
    assert (r["lr"], r["lr_scaling"], r["weight_decay"], r["warmup_epochs"], r["layer_decay"]) == (
        5e-5, "none", 1e-8, 0, 0.7,
    )  # fmt: skip
    assert (t["max_epochs"], r["drop_path_rate"], t["gradient_clip_val"], m["ema_decay"]) == (30, 0.4, 1, 0.9999)
    assert m["mixup"] == 0 and m["cutmix"] == 0 and d["img_size"] == 384 and d["crop_pct"] == 1.0
    assert m["backbone"] == "hornet_large_gf_img384" and m["backbone_kwargs"]["pretrained"] is True


@pytest.mark.parametrize("strategy", [None, *STRATEGIES], ids=["none", *(p.stem for p in STRATEGIES)])
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_strategy_overlays_keep_each_recipes_global_batch_and_lr(recipe, strategy, capsys):
    config = _resolved(capsys, recipe, *([strategy] if strategy else []))
    trainer, model, data = config["trainer"], class_args(config["model"]), config["data"]["init_args"]
    global_batch = trainer["devices"] * trainer["num_nodes"] * data["batch_size"] * trainer["accumulate_grad_batches"]
    optimisation = model["recipe"]
    rate, scaling = optimisation["lr"], optimisation["lr_scaling"]
    lr = rate * global_batch / 4096 if scaling == "linear" else rate
    assert (global_batch, lr) == pytest.approx(_stated(recipe))
    if strategy is not None:
        overlay = yaml.safe_load(strategy.read_text())
        assert list(overlay) == ["trainer"] and list(overlay["trainer"]) == ["strategy"]  # the strategy, nothing else
        assert config["trainer"]["strategy"]["class_path"] == overlay["trainer"]["strategy"]["class_path"]


def test_suites_share_the_smoke_scale(capsys):
    suites = sorted(EXPERIMENTS.glob("*_ablation.yaml"))
    dense = ("horfpn_ablation.yaml", "horfpn_detection_ablation.yaml")
    classification = [suite for suite in suites if suite.name not in dense]
    assert len(suites) == 6 and len(classification) == 4
    for suite in classification:
        text = yaml.safe_load(suite.read_text())
        assert text["base"] == "scale/smoke.yaml" and "trainer" not in text and "data" not in text, suite.name
        config = _resolved(capsys, suite)
        assert config["trainer"]["max_epochs"] == 2 and config["data"]["init_args"]["limit_train"] == 20000
    full = _resolved(capsys, EXPERIMENTS / "order_ablation.yaml", EXPERIMENTS / "scale" / "cpu_full.yaml")
    assert full["trainer"]["max_epochs"] == 5 and full["data"]["init_args"]["limit_train"] is None
    # the segmentation suite extends its own recipe, and its longer schedule keeps the suite's variants
    horfpn = EXPERIMENTS / "horfpn_ablation.yaml"
    assert yaml.safe_load(horfpn.read_text())["base"] == "segmentation/scenes.yaml"
    long = _resolved(capsys, horfpn, EXPERIMENTS / "segmentation" / "scenes_long.yaml")
    assert long["trainer"]["max_epochs"] == 12 and long["data"]["init_args"]["train_scenes"] == 8000
    assert long["ablation"]["name"] == "horfpn_ablation_long" and len(long["ablation"]["variants"]) == 3
    assert long["model"]["class_path"] == "hornet.lit.SegmentationModule"
    # the detection suite extends its recipe; the COCO overlay keeps its variants and sets the released 1x recipe
    detection = EXPERIMENTS / "horfpn_detection_ablation.yaml"
    assert yaml.safe_load(detection.read_text())["base"] == "detection/scenes.yaml"
    coco = _resolved(capsys, detection, EXPERIMENTS / "detection" / "coco_mask_rcnn_1x.yaml")
    assert coco["ablation"]["name"] == "horfpn_detection_ablation_coco" and len(coco["ablation"]["variants"]) == 3
    model = coco["model"]["init_args"]
    assert (
        model["backbone"],
        model["detector"]["channels"],
        model["recipe"]["lr"],
        model["recipe"]["weight_decay"],
    ) == (
        "hornet_small_7x7",
        256,
        1e-4,
        0.05,
    )
    assert (model["recipe"]["schedule"], model["recipe"]["step_epochs"], coco["trainer"]["max_epochs"]) == (
        "step", [8, 11], 12,
    )  # fmt: skip
    assert coco["data"]["class_path"] == "hornet.data.COCODataModule"
    # its longer schedule on the scenes: 6x the smoke scale's steps, the same variants and recipe
    long = _resolved(capsys, detection, EXPERIMENTS / "detection" / "scenes_long.yaml")
    smoke = _resolved(capsys, detection)
    assert long["ablation"]["name"] == "horfpn_detection_ablation_long" and len(long["ablation"]["variants"]) == 3
    steps = {c["trainer"]["max_epochs"] * c["data"]["init_args"]["train_scenes"] for c in (long, smoke)}
    assert max(steps) == 6 * min(steps) and long["model"] == smoke["model"]


def test_a_base_chain_applies_in_order_and_bad_bases_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "grand.yaml").write_text("trainer:\n  max_epochs: 7\n  devices: 3\nmodel:\n  lr: 0.5\n")
    (tmp_path / "sub" / "parent.yaml").write_text("base: grand.yaml\ntrainer:\n  max_epochs: 5\n")
    (tmp_path / "child.yaml").write_text("base: sub/parent.yaml\nmodel:\n  weight_decay: 0.2\n")
    config = _resolved(capsys, tmp_path / "child.yaml")
    assert (config["trainer"]["max_epochs"], config["trainer"]["devices"]) == (5, 3)  # parent over grand, grand kept
    recipe = class_args(config["model"])["recipe"]  # flat keys (the layout before model.recipe) move into it
    assert (recipe["lr"], recipe["weight_decay"]) == (0.5, 0.2)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    for name, problem in (("loop", "includes itself"), ("orphan", "does not exist")):
        assert main(["fit", "--config", str(tmp_path / f"{name}.yaml"), "--print_config"]) == 2
        err = capsys.readouterr().err
        assert "hornet: error:" in err and problem in err and "Traceback" not in err

"""`hornet analyze interactions | erf`: the multi-order interaction estimator on games with known answers, the masking,
the ERF on convolutions of known reach, and both commands end to end."""

import csv
import itertools

import numpy as np
import pytest
import torch

from hornet.analysis.probe.erf import area_ratios, erf_map, stage_features
from hornet.analysis.probe.interactions import (
    cell_index,
    correctly_classified,
    estimate_interactions,
    interaction_orders,
    masked_inputs,
    neighbour_pairs,
    shapley_interaction,
)  # fmt: skip
from hornet.cli import main

PLAYERS = 6
PAIR = [(0, 1)]


def _estimate(game, contexts=None, pairs=PAIR):
    orders = list(range(PLAYERS - 1))  # every m from 0 to n - 2
    sample = estimate_interactions(
        game, PLAYERS, pairs, orders, contexts=contexts, generator=np.random.default_rng(0), batch_size=37
    )
    return sample.values


def test_a_pure_pair_interacts_equally_at_every_order():
    values = _estimate(lambda s: (s[:, 0] & s[:, 1]).float(), contexts=8)  # v = x_0 x_1
    torch.testing.assert_close(values, torch.ones(1, PLAYERS - 1))


def test_a_three_way_term_interacts_as_often_as_its_third_player_is_drawn():
    values = _estimate(lambda s: (s[:, 0] & s[:, 1] & s[:, 2]).float())  # v = x_0 x_1 x_2, all contexts enumerated
    expected = torch.tensor([m / (PLAYERS - 2) for m in range(PLAYERS - 1)])  # P(player 2 in a context of size m)
    torch.testing.assert_close(values[0], expected)


def test_an_additive_game_has_no_interaction():
    weights = torch.arange(1.0, PLAYERS + 1)
    values = _estimate(lambda s: s.float() @ weights, contexts=8, pairs=[(0, 1), (2, 5)])
    assert values.abs().max() < 1e-5


def test_the_shapley_interaction_index_is_the_mean_over_orders():
    table = torch.randn(2**PLAYERS, generator=torch.Generator().manual_seed(0))  # an arbitrary game on 6 players
    powers = 2 ** torch.arange(PLAYERS)

    def game(present):
        return table[(present.long() * powers).sum(dim=1)]

    for i, j in itertools.combinations(range(4), 2):
        exact = _estimate(game, pairs=[(i, j)])[0]
        assert exact.sum().item() / (PLAYERS - 1) == pytest.approx(shapley_interaction(game, PLAYERS, i, j), abs=1e-5)


def test_orders_and_pairs_follow_the_reference_sampling():
    assert interaction_orders(49) == [0, 2, 4, 9, 14, 18, 23, 28, 32, 37, 42, 44, 47]
    pairs = neighbour_pairs(7, 50, np.random.default_rng(1))
    assert len(pairs) == len({tuple(sorted(p)) for p in pairs}) == 50
    for i, j in pairs:
        assert i != j and abs(i // 7 - j // 7) <= 2 and abs(i % 7 - j % 7) <= 2
    assert len(neighbour_pairs(2, 100, np.random.default_rng(0))) == 6  # every pair of a 2 x 2 grid, then it stops


def test_masking_keeps_present_cells_and_fills_the_rest_with_the_mean():
    image = torch.arange(1.0, 2 * 6 * 9 + 1).reshape(2, 6, 9)  # 2 channels, a 6 x 9 image: 3 x 3 cells of 2 x 3 px
    cells = cell_index(3, 6, 9)
    assert cells[0, 0] == 0 and cells[1, 2] == 0 and cells[2, 3] == 4 and cells[5, 8] == 8
    present = torch.zeros(2, 9, dtype=torch.bool)
    present[0, 4] = True  # the centre cell: rows 2-3, columns 3-5
    present[1] = True
    masked = masked_inputs(image, cells, present, baseline=0.0)  # (2, 2, 6, 9)
    expected = torch.zeros_like(image)
    expected[:, 2:4, 3:6] = image[:, 2:4, 3:6]
    torch.testing.assert_close(masked[0], expected)
    torch.testing.assert_close(masked[1], image)


def _depthwise(kernel: int) -> torch.nn.Conv2d:
    conv = torch.nn.Conv2d(1, 1, kernel, padding=kernel // 2, bias=False)
    torch.nn.init.ones_(conv.weight)
    return conv


@pytest.mark.parametrize("kernel", [3, 5])
def test_the_erf_of_stacked_convolutions_grows_by_kernel_minus_one(kernel):
    images = [torch.rand(2, 1, 21, 21) + 0.1]
    single = erf_map(_depthwise(kernel), images)
    rows, cols = torch.nonzero(single, as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (kernel, kernel)
    stacked = erf_map(torch.nn.Sequential(_depthwise(kernel), _depthwise(kernel)), images)
    rows, cols = torch.nonzero(stacked, as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (2 * kernel - 1, 2 * kernel - 1)
    ratios = area_ratios(single)
    assert ratios[0.99] == pytest.approx(kernel * kernel / 21**2)  # the k x k square holds it all


def _mirror_symmetric_stages(stages: int) -> list[torch.nn.Module]:
    """x -> each stage's map of a network that commutes with horizontal and vertical flips (3x3 convolutions with
    mirror-symmetric kernels, GELU, 2x2 average pooling): its true ERF is centred on the image."""
    torch.manual_seed(0)
    layers, prefixes = [], []
    for stage in range(stages):
        conv = torch.nn.Conv2d(1 if stage == 0 else 8, 8, 3, padding=1)
        with torch.no_grad():
            weight = conv.weight
            weight.copy_((weight + weight.flip(-1) + weight.flip(-2) + weight.flip(-1, -2)) / 4)
        layers += [conv, torch.nn.GELU(), torch.nn.AvgPool2d(2)]
        prefixes.append(torch.nn.Sequential(*layers))
    return prefixes


def _centre_of_mass_offset(aggregated: torch.Tensor) -> float:
    """Distance in pixels from the map's centre of mass to the image's centre ((H - 1) / 2, (W - 1) / 2)."""
    height, width = aggregated.shape
    total = aggregated.sum()
    row = (aggregated.sum(1) * torch.arange(height)).sum() / total - (height - 1) / 2
    col = (aggregated.sum(0) * torch.arange(width)).sum() / total - (width - 1) / 2
    return float((row**2 + col**2).sqrt())


@pytest.mark.parametrize("size", [24, 40])  # stage maps 12, 6, 3 and 20, 10, 5: even and odd
def test_the_erf_of_a_mirror_symmetric_network_is_centred_at_every_stage(size):
    images = torch.rand(4, 1, size, size)
    images = torch.cat([images, images.flip(-1), images.flip(-2), images.flip(-1, -2)])  # (16, 1, size, size)
    for stage, features in enumerate(_mirror_symmetric_stages(3)):
        offset = _centre_of_mass_offset(erf_map(features, [images]))
        assert offset < 0.5, f"stage {stage + 1} of {size} px: centre of mass {offset:.2f} px off the centre"


def test_area_ratios_grow_squares_about_the_centre_of_an_even_map():
    aggregated = torch.zeros(16, 16)
    aggregated[7:9, 7:9] = 1.0  # all of it on the central 2x2 cells
    assert set(area_ratios(aggregated).values()) == {4 / 256}
    aggregated[6:10, 6:10] += 1.0  # and a ring around them: 8 of 20 units in the 2x2, all of it in the 4x4
    ratios = area_ratios(aggregated, thresholds=(0.4, 0.41, 1.0))
    assert ratios == {0.4: 4 / 256, 0.41: 16 / 256, 1.0: 16 / 256}


def test_a_model_without_feature_maps_and_an_empty_split_are_errors():
    with pytest.raises(ValueError, match="no stage feature map"):
        stage_features(torch.nn.Linear(4, 2), 0)
    with pytest.raises(ValueError, match="no images"):
        erf_map(_depthwise(3), [])
    with pytest.raises(ValueError, match="holds no images"):
        correctly_classified(torch.nn.Linear(4, 2), [], 3, seed=0)


def test_both_commands_write_their_csv_and_png(tmp_path):
    common = ["--model", "hornet_micro_gf"]
    out = tmp_path / "ia"
    args = ["--images", "2", "--grid", "3", "--pairs", "2", "--contexts", "2", "--orders", "0", "0.5", "1"]
    assert main(["analyze", "interactions", *common, *args, "--output", str(out)]) == 0
    rows = list(csv.DictReader((out / "interactions.csv").open()))
    assert len(rows) == 2 * 2 * 3 and set(rows[0]) == {"image", "label", "i", "j", "m", "m_over_n", "I"}
    strength = list(csv.DictReader((out / "interaction_strength.csv").open()))
    assert [int(r["m"]) for r in strength] == [0, 3, 7]
    assert np.mean([float(r["J"]) for r in strength]) == pytest.approx(1.0, abs=1e-4)  # normalised by its mean
    assert (out / "interactions.png").stat().st_size > 0
    again = tmp_path / "again"
    assert main(["analyze", "interactions", *common, *args, "--output", str(again)]) == 0
    assert (again / "interactions.csv").read_text() == (out / "interactions.csv").read_text()  # seeded
    assert main(["analyze", "erf", *common, "--images", "2", "--sizes", "32", "--output", str(tmp_path / "erf")]) == 0
    ratios = list(csv.DictReader((tmp_path / "erf" / "erf.csv").open()))
    assert len(ratios) == 4 * 4 and {r["stage"] for r in ratios} == {"1", "2", "3", "4"}
    assert (tmp_path / "erf" / "erf.png").stat().st_size > 0


def test_a_grid_larger_than_the_image_is_one_line_exit_2(tmp_path, capsys):
    args = ["analyze", "interactions", "--model", "hornet_micro_gf", "--grid", "40", "--output", str(tmp_path)]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hornet: error:")]
    assert len(errors) == 1 and "--grid must be between 2 and the image's side 32" in errors[0]


def _imagenet_tree(root, classes: int = 10, per_class: int = 2):
    """An ImageNet-layout folder: train/ and val/ of class folders of JPEGs (80 x 96, not the model's size)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 1), ("val", per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    return root


RELEASED_ARCH = {"base_dim": 16, "depths": [1, 1, 2, 1]}  # tests/fixtures/README.md; mixers: the models' own


def test_any_timm_classifier_with_released_weights_is_analysed_on_an_imagenet_folder_and_compared(
    tmp_path, released_fixture
):
    """The paper's appendix-B setting in small: released-format weights, an ImageNet-layout folder seen through the
    model's own eval transform, several models in one figure; and a non-HorNet timm classifier."""
    import json

    from hornet.analysis.probe.trained import load_trained

    root = _imagenet_tree(tmp_path / "imagenet")
    files = {}
    for case, name in (("7x7", "hornet_tiny_7x7"), ("gf", "hornet_tiny_gf")):
        files[name] = tmp_path / f"{name}.pth"
        torch.save({"model": released_fixture[case]["state_dict"]}, files[name])  # the authors' layout
    trained = load_trained(
        model="hornet_tiny_gf", weights=files["hornet_tiny_gf"], model_kwargs=RELEASED_ARCH, data_root=root,
        img_size=64,
    )  # fmt: skip
    with torch.no_grad():  # the released weights, not an initialisation: the released code's logits
        logits = trained.model(released_fixture["gf"]["inputs"][64])
    assert (logits - released_fixture["gf"]["logits"][64]).abs().max() <= 1e-4
    trained.data.setup("test")
    image, _ = trained.data.test_set[0]
    assert image.shape == (3, 64, 64) and len(trained.data.test_set) == 20 and trained.data.num_classes == 10
    expected = trained.model.pretrained_cfg
    config = trained.data.data_config()  # the model's own crop and normalisation
    assert config["crop_pct"] == expected["crop_pct"] and tuple(config["mean"]) == tuple(expected["mean"])

    out = tmp_path / "compare"
    args = ["analyze", "compare", "erf", *(f"{name}={path}" for name, path in files.items()),
            "--model-kwargs", json.dumps(RELEASED_ARCH), "--data-root", str(root), "--img-size", "64",
            "--images", "4", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    assert (out / "compare_erf.png").is_file()
    ratios = {name: (out / name / "erf.csv").read_text() for name in files}
    assert ratios["hornet_tiny_7x7"] != ratios["hornet_tiny_gf"]  # two models, each measured

    assert main(["analyze", "erf", "--model", "convnext_atto", "--data-root", str(root), "--img-size", "64",
                 "--images", "2", "--sizes", "64", "--output", str(tmp_path / "convnext")]) == 0  # fmt: skip
    with (tmp_path / "convnext" / "erf.csv").open() as handle:
        assert {row["stage"] for row in csv.DictReader(handle)} == {"1", "2", "3", "4"}

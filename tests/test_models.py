"""HorNet variants: exact parameter counts, the released layer-decay grouping, equivariance, argument errors."""

import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

from hornet.models import VARIANTS, HorBlock, HorNet, create_model, input_size_kwargs

RELEASED_PARAMS = {  # exact counts of the released architectures with a 1000-class head (docs/reference.md)
    "hornet_tiny_7x7": 22.41, "hornet_tiny_gf": 22.99, "hornet_small_7x7": 49.53, "hornet_small_gf": 50.40,
    "hornet_base_7x7": 87.26, "hornet_base_gf": 88.42, "hornet_base_gf_img384": 92.10,
    "hornet_large_7x7": 194.54, "hornet_large_gf": 196.29, "hornet_large_gf_img384": 201.81,
}  # fmt: skip
SMALL_PARAMS = {
    "hornet_micro_7x7": 507_576,
    "hornet_micro_gf": 491_196,
    "hornet_nano_7x7": 3_385_160,
    "hornet_nano_gf": 3_305_480,
}


def test_every_variant_is_registered():
    assert set(VARIANTS) == set(RELEASED_PARAMS) | set(SMALL_PARAMS)
    isotropic = {n for n in timm.list_models("hornet_iso_*")}  # hornet.models.isotropic and .matching
    assert isotropic == {"hornet_iso_micro", "hornet_iso_small", "hornet_iso_micro_matched", "hornet_iso_small_matched"}
    assert set(timm.list_models("hornet_*")) - isotropic == set(VARIANTS)  # the real models only: no *_reference


@pytest.mark.parametrize("name", sorted(RELEASED_PARAMS))
def test_released_parameter_counts(name):
    model = timm.create_model(name, device="meta")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == RELEASED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(SMALL_PARAMS))
def test_small_variant_parameter_counts(name):
    assert sum(p.numel() for p in timm.create_model(name).parameters()) == SMALL_PARAMS[name]


def test_released_layer_decay_grouping_on_large_gf_img384():
    model = timm.create_model("hornet_large_gf_img384", device="meta")
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.7)
    scale_of = {}
    for group in groups:
        for p in group["params"]:
            scale_of[id(p)] = (group["lr_scale"], group["weight_decay"])
    expected_id = {
        "downsample_layers.0.0.weight": 0, "downsample_layers.1.1.weight": 2, "downsample_layers.2.1.weight": 3,
        "downsample_layers.3.1.weight": 12, "stages.0.1.pwconv1.weight": 1, "stages.1.2.pwconv1.weight": 2,
        "stages.2.0.pwconv1.weight": 3, "stages.2.1.pwconv1.weight": 3, "stages.2.2.pwconv1.weight": 4,
        "stages.2.15.pwconv1.weight": 10, "stages.2.16.pwconv1.weight": 11, "stages.2.17.pwconv1.weight": 11,
        "stages.3.1.pwconv1.weight": 12, "head.weight": 13,
    }  # fmt: skip
    params = dict(model.named_parameters())
    for name, layer_id in expected_id.items():
        lr_scale, _ = scale_of[id(params[name])]
        assert lr_scale == pytest.approx(0.7 ** (13 - layer_id)), name
    # weight decay on every parameter with more than one dimension: the GF filter is decayed, norms and gammas not
    assert scale_of[id(params["stages.2.0.gnconv.dwconv.complex_weight"])][1] == 0.05
    assert scale_of[id(params["stages.2.0.gamma1"])][1] == 0.0
    assert scale_of[id(params["norm.weight"])][1] == 0.0
    assert len({g["lr_scale"] for g in groups}) == 14


def test_coarse_group_matcher_groups_stem_and_stages():
    from timm.models import group_parameters

    groups = group_parameters(
        timm.create_model("hornet_micro_7x7"), timm.create_model("hornet_micro_7x7").group_matcher(coarse=True)
    )
    assert len(groups) == 6  # stem, 4 stages (each with its downsample), head + final norm


def test_block_is_translation_equivariant():
    block = HorBlock(16, order=3, mixer="dw7", scale=1 / 3, layer_scale_init_value=0.5).eval()
    x = torch.zeros(1, 16, 40, 40)
    x[..., 12:24, 12:24] = torch.randn(1, 16, 12, 12)
    shift = (3, 5)
    shifted = torch.roll(x, shifts=shift, dims=(2, 3))
    with torch.no_grad():
        y, y_shifted = block(x), block(shifted)
    # away from the zero-padded borders (7x7 reach = 3 px), shifting commutes with the block
    expected = torch.roll(y, shifts=shift, dims=(2, 3))
    torch.testing.assert_close(y_shifted[..., 8:32, 8:32], expected[..., 8:32, 8:32], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["hornet_micro_7x7", "hornet_micro_gf"])
def test_grad_checkpointing_and_channels_last_keep_outputs(name):
    model = timm.create_model(name, drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(model(x), expected)
    model.set_grad_checkpointing(False)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "img_size,stem_stride,maps", [(28, 1, [28, 14, 7, 3]), (32, 2, [16, 8, 4, 2]), (64, 4, [16, 8, 4, 2])]
)
def test_small_images_are_first_class(img_size, stem_stride, maps):
    model = timm.create_model("hornet_micro_gf", img_size=img_size, stem_stride=stem_stride, in_chans=1, num_classes=10)
    _, stages = model.forward_intermediates(torch.randn(2, 1, img_size, img_size))
    assert [s.shape[-1] for s in stages] == maps
    assert model.pretrained_cfg["input_size"] == (3, img_size, img_size)
    assert model.stages[2][0].gnconv.dwconv.complex_weight.shape[1:3] == (maps[2], maps[2] // 2 + 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(orders=(2, 3, 4)), "orders must be a list of 4 per-stage values"),
        (dict(depths=(2, 3, 0, 2)), "depths must be >= 1"),
        (dict(mixers=("dw7", "dw7", "fft", "gf")), "mixer 'fft' is unknown"),
        (dict(mixers=("dw7", "dw6", "dw7", "dw7")), "kernel size must be odd"),
        (dict(base_dim=6, orders=(3, 3, 3, 3)), r"orders\[0\]=3: stage 1 width 6 \(= base_dim \* 1\)"),
        (dict(base_dim=8, orders=(4, 4, 4, 8)), r"orders\[3\]=8: stage 4 width 64 \(= base_dim \* 8\)"),
        (dict(stem_stride=0), "stem_stride must be a positive integer"),
        (dict(img_size=16, stem_stride=4), "too small"),
    ],
)
def test_invalid_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HorNet(**{"base_dim": 16, "depths": (1, 1, 1, 1), **kwargs})


@pytest.mark.parametrize(
    "name, sized",
    [("hornet_tiny_gf", True), ("hornet_tiny_7x7_reference", True), ("swin_tiny_patch4_window7_224", True),
     ("vit_tiny_patch16_224", True), ("convnext_tiny", False), ("resnet18", False)],
)  # fmt: skip
def test_models_built_for_an_input_size_are_known(name, sized):
    """bench, complexity and training pass img_size to exactly these (a Swin built for 224 px refuses 64 px input)."""
    assert input_size_kwargs(name, 64) == ({"img_size": 64} if sized else {})
    if sized and name.startswith("swin"):
        model = create_model(name, img_size=64, pretrained=False).eval()
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)

"""Isotropic hosts (ViT / DeiT-style, an isotropic HorNet) and FLOPs-matched gnConv arms."""

import pytest
import timm
import torch
from timm.layers import Attention

import hornet  # noqa: F401  (registers the models)
from hornet.analysis.measure.complexity import count_complexity
from hornet.analysis.measure.matching import match_macs
from hornet.cli import main
from hornet.models import ISOTROPIC, MATCHED
from hornet.models.hornet import HorBlock
from hornet.models.isotropic import TokenMapGnConv
from hornet.ops import GnConv

MICRO = [name for name in ISOTROPIC if "_micro" in name]


@pytest.mark.parametrize("name", MICRO + [name for name in MATCHED if "_micro" in name])
def test_forward_backward_and_every_parameter_used(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1, img_size=32)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10)
    out.square().sum().backward()
    assert not [k for k, p in model.named_parameters() if p.grad is None]  # DDP refuses unused parameters


@pytest.mark.parametrize("size", ["micro", "small"])
def test_vit_gnconv_replaces_self_attention_over_the_token_map(size):
    with torch.device("meta"):
        plain = timm.create_model(f"vit_iso_{size}_plain")
        swapped = timm.create_model(f"vit_iso_{size}_gnconv")
    assert plain.cls_token is None and plain.global_pool == "avg"  # no class token: the tokens are the map
    assert all(isinstance(block.attn, Attention) for block in plain.blocks)
    assert not any(isinstance(m, Attention) for m in swapped.modules())  # removed, not bypassed
    assert all(isinstance(block.attn, TokenMapGnConv) for block in swapped.blocks)
    grid = (8, 8) if size == "micro" else (14, 14)  # patch 4 at 32 px; DeiT-S's patch 16 at 224 px
    assert swapped.blocks[0].attn.grid == grid and swapped.blocks[0].attn.gnconv.order == 3
    keys = set(plain.state_dict()) - set(swapped.state_dict())
    assert keys and all(".attn." in k for k in keys)  # only the attention weights differ


def test_token_map_gnconv_is_gnconv_on_the_map():
    torch.manual_seed(0)
    gnconv = GnConv(16, order=3, mixer="dw7", scale=1 / 3)
    x = torch.randn(2, 16, 4, 4)  # (B, C, H, W)
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C), row-major over the map
    out = TokenMapGnConv(gnconv, (4, 4))(tokens)
    torch.testing.assert_close(out, gnconv(x).flatten(2).transpose(1, 2))


def test_isotropic_hornet_has_one_resolution_and_constant_width():
    model = timm.create_model("hornet_iso_micro", num_classes=10, img_size=32)
    blocks = list(model.blocks)
    assert len(blocks) == 4 and all(isinstance(b, HorBlock) and b.gnconv.order == 3 for b in blocks)
    features = model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)
    assert [f.shape for f in features] == [(1, 32, 8, 8)] * 4
    small = count_complexity(timm.create_model("hornet_iso_small", device="meta"), 224)
    assert small.params == pytest.approx(21.73e6, rel=0.01) and small.macs == pytest.approx(4.167e9, rel=0.01)


def test_deit_small_sized_host_matches_timms_deit_small():
    with torch.device("meta"):
        ours = count_complexity(timm.create_model("vit_iso_small_plain"), 224)
        deit = count_complexity(timm.create_model("deit_small_patch16_224"), 224)
    assert ours.params == pytest.approx(deit.params, rel=0.001)  # the same transformer, no class token
    assert ours.macs == pytest.approx(deit.macs, rel=0.01)


@pytest.mark.parametrize("name", sorted(MATCHED))
def test_matched_arms_are_within_5_percent_of_their_baselines(name):
    spec = MATCHED[name]
    with torch.device("meta"):
        matched = count_complexity(timm.create_model(name, num_classes=10, img_size=spec.img_size), spec.img_size)
        baseline = count_complexity(
            timm.create_model(spec.baseline, num_classes=10, img_size=spec.img_size), spec.img_size
        )
    assert abs(matched.macs / baseline.macs - 1) <= 0.05, (matched.macs, baseline.macs)


@pytest.mark.parametrize("name", [name for name in sorted(MATCHED) if "_micro" in name])
def test_the_search_rederives_each_matched_setting(name):
    spec = MATCHED[name]
    settings, ratio = match_macs(spec.arm, spec.baseline, spec.img_size)
    assert settings == spec.settings and abs(ratio - 1) <= 0.05


def test_the_same_shape_arms_differ_in_cost_which_is_why_matching_exists():
    costs = {}
    for name in ("convnext_micro_plain", "convnext_micro_gnconv", "vit_iso_micro_plain", "vit_iso_micro_gnconv"):
        with torch.device("meta"):
            costs[name] = count_complexity(timm.create_model(name, num_classes=10, img_size=32), 32).macs
    assert costs["convnext_micro_gnconv"] > 1.3 * costs["convnext_micro_plain"]
    assert costs["vit_iso_micro_gnconv"] < 0.95 * costs["vit_iso_micro_plain"]


def test_profile_shows_each_match(capsys):
    assert main(["profile", "--matched", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    for name, spec in MATCHED.items():
        assert name in out and spec.baseline in out
    assert "MACs_vs_baseline_%" in out


@pytest.mark.parametrize("name", ["vit_iso_micro_plain", "vit_iso_micro_gnconv", "hornet_iso_micro"])
def test_isotropic_features_are_the_last_blocks_maps(name):
    features = timm.create_model(name, features_only=True, img_size=32)
    maps = features(torch.randn(2, 3, 32, 32))
    assert [m.shape for m in maps] == [(2, 32, 8, 8)] * 4  # one resolution: every block at stride 4

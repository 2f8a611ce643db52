"""gnConv placed inside timm ConvNeXt and Swin blocks, beside their unmodified baselines."""

import pytest
import timm
import torch
from timm.models.convnext import ConvNeXtBlock
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention

import hornet  # noqa: F401  (registers the models)
from hornet.analysis.measure.complexity import count_complexity
from hornet.cli import main
from hornet.models import PLACEMENTS
from hornet.models.placement import GnConvSwinBlock, TokensGnConv
from hornet.ops import GnConv


@pytest.mark.parametrize("name", PLACEMENTS)
def test_forward_backward_and_every_parameter_used(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1, img_size=32)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10)
    out.square().sum().backward()
    unused = [k for k, p in model.named_parameters() if p.grad is None]
    assert not unused  # DDP would refuse unused parameters


@pytest.mark.parametrize("size", ["micro", "nano"])
def test_convnext_gnconv_replaces_the_depthwise_conv(size):
    plain = timm.create_model(f"convnext_{size}_plain", num_classes=10)
    swapped = timm.create_model(f"convnext_{size}_gnconv", num_classes=10)
    blocks = [m for m in swapped.modules() if isinstance(m, ConvNeXtBlock)]
    assert blocks and all(isinstance(b.conv_dw, GnConv) for b in blocks)
    assert all(isinstance(m.conv_dw, torch.nn.Conv2d) for m in plain.modules() if isinstance(m, ConvNeXtBlock))
    orders = [b.conv_dw.order for b in blocks]
    assert orders == sorted(orders) and orders[0] == 2 and orders[-1] == 5  # per-stage orders (2, 3, 4, 5)
    # stage maps 16/8/4/2 at 32 px, like the small HorNets (timm's stage-0 downsample is removed)
    assert swapped.forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (2, 2)
    assert [info["reduction"] for info in swapped.feature_info] == [2, 4, 8, 16]


@pytest.mark.parametrize("size", ["micro", "nano"])
def test_swin_gnconv_replaces_window_attention(size):
    plain = timm.create_model(f"swin_{size}_plain", num_classes=10, img_size=32)
    swapped = timm.create_model(f"swin_{size}_gnconv", num_classes=10, img_size=32)
    assert any(isinstance(m, WindowAttention) for m in plain.modules())
    assert not any(isinstance(m, WindowAttention) for m in swapped.modules())  # removed, not bypassed
    blocks = [m for m in swapped.modules() if isinstance(m, SwinTransformerBlock)]
    assert blocks and all(type(b) is GnConvSwinBlock and isinstance(b.attn, TokensGnConv) for b in blocks)
    assert not any("relative_position" in k for k in swapped.state_dict())


def test_matched_width_and_depth_give_hornet_sized_models():
    """gnConv in a Swin block is a HorBlock up to norms; in ConvNeXt it has the same parameters."""
    sizes = {n: count_complexity(timm.create_model(n, num_classes=10, img_size=32), 32) for n in PLACEMENTS}
    hornet_micro = count_complexity(timm.create_model("hornet_micro_7x7", num_classes=10), 32)
    assert abs(sizes["swin_micro_gnconv"].params - hornet_micro.params) / hornet_micro.params < 0.001
    assert sizes["swin_micro_gnconv"].macs == pytest.approx(hornet_micro.macs, rel=0.01)
    assert abs(sizes["convnext_micro_gnconv"].params - hornet_micro.params) / hornet_micro.params < 0.01
    assert sizes["convnext_micro_plain"].params < sizes["convnext_micro_gnconv"].params


def test_profile_reports_placement_models(capsys):
    assert main(["profile", "convnext_micro_plain", "swin_micro_gnconv", "--img-size", "32", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "model,img_size,params_M,GMACs" and len(lines) == 3
    assert lines[1].startswith("convnext_micro_plain,32,") and lines[2].startswith("swin_micro_gnconv,32,")


def test_placement_models_have_no_weights_to_download():  # without a checkpoint file
    with pytest.raises(ValueError, match="has no pretrained weights"):
        timm.create_model("swin_micro_gnconv", pretrained=True)


@pytest.mark.parametrize(
    "name", ["swin_micro_gnconv", "convnext_micro_plain", "vit_iso_micro_gnconv", "hornet_iso_micro"]
)
def test_a_hornet_fit_checkpoint_loads_into_an_ablation_model(tmp_path, name):
    """The analyses rebuild a run's model from its checkpoint (``backbone.*``) with timm's pretrained file overlay."""
    trained = timm.create_model(name, num_classes=10, in_chans=1, img_size=32)
    state = {f"backbone.{key}": value for key, value in trained.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"backbone": name}}, tmp_path / "best.ckpt")
    overlay = dict(file=str(tmp_path / "best.ckpt"))
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, in_chans=1,
                               img_size=32)  # fmt: skip
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.pretrained_cfg["state_dict"] is None  # no second copy of the weights kept

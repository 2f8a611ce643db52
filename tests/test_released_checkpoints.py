"""Released checkpoints load exactly through timm, offline, in every released file layout."""

import argparse

import pytest
import timm
import torch

ARCH = dict(base_dim=16, depths=(1, 1, 2, 1), num_classes=10, img_size=64)
MIXERS = {"7x7": ("dw7",) * 4, "gf": ("dw7", "dw7", "gf", "gf")}


def _released_file(tmp_path, payload, name="checkpoint.pth"):
    path = tmp_path / name
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("case", ["7x7", "gf"])
def test_reproduces_released_logits(tmp_path, released_fixture, case):
    data = released_fixture[case]
    path = _released_file(tmp_path, {"model": data["state_dict"]})
    model = timm.create_model(
        "hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), mixers=MIXERS[case], **ARCH
    ).eval()
    for size, x in data["inputs"].items():  # 64 px: native filter size; 96 px: the released bilinear resize
        with torch.no_grad():
            diff = (model(x) - data["logits"][size]).abs().max().item()
        assert diff <= 1e-4, (case, size, diff)


def test_training_checkpoint_with_namespace_ema_and_optimizer(tmp_path, released_fixture):
    data = released_fixture["gf"]
    raw = data["state_dict"]
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in raw.items()}
    payload = {
        "model": raw,
        "model_ema": ema,
        "optimizer": {"state": {}, "param_groups": [{"lr": 4e-3}]},
        "epoch": 299,
        "args": argparse.Namespace(model="hornet_tiny_gf", lr=4e-3),
    }
    path = _released_file(tmp_path, payload)
    common = dict(mixers=MIXERS["gf"], **ARCH)
    raw_model = timm.create_model(
        "hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **common
    )
    ema_model = timm.create_model(
        "hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path), weights="ema"), **common
    )
    key = "stages.2.0.gnconv.dwconv.complex_weight"
    torch.testing.assert_close(raw_model.state_dict()[key], raw[key])  # raw by default
    torch.testing.assert_close(ema_model.state_dict()[key], ema[key])
    x = data["inputs"][64]
    with torch.no_grad():
        assert (raw_model.eval()(x) - data["logits"][64]).abs().max() <= 1e-4
    assert raw_model.pretrained_cfg["state_dict"] is None  # no second copy of the weights kept around


def test_bare_state_dict_and_missing_ema(tmp_path, released_fixture):
    path = _released_file(tmp_path, released_fixture["7x7"]["state_dict"])
    model = timm.create_model("hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **ARCH)
    x = released_fixture["7x7"]["inputs"][64]
    with torch.no_grad():
        assert (model.eval()(x) - released_fixture["7x7"]["logits"][64]).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="has no EMA weights"):
        timm.create_model(
            "hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path), weights="ema"), **ARCH
        )


@pytest.mark.parametrize("name", ["hornet_tiny_7x7", "hornet_tiny_gf"])
def test_round_trip_released_layout_at_224_384_and_non_square(tmp_path, name):
    source = timm.create_model(name).eval()
    with torch.no_grad():  # give layer scales a visible effect
        for n, p in source.named_parameters():
            if "gamma" in n:
                p.fill_(0.5)
    path = _released_file(tmp_path, {"model": source.state_dict(), "args": argparse.Namespace(model=name)})
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    for size in [(224, 224), (384, 384), (192, 256)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert (loaded(x) - source(x)).abs().max() <= 1e-4, size


def test_gf_filter_stored_for_another_size_is_resized_on_load(tmp_path):
    source = timm.create_model("hornet_tiny_gf").eval()  # filters for 224 px: (14, 8) and (7, 4)
    path = _released_file(tmp_path, {"model": source.state_dict()})
    at_384 = timm.create_model(
        "hornet_tiny_gf", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), img_size=384
    ).eval()
    assert at_384.state_dict()["stages.2.0.gnconv.dwconv.complex_weight"].shape == (240, 24, 13, 2)
    assert at_384.state_dict()["stages.3.0.gnconv.dwconv.complex_weight"].shape == (496, 12, 7, 2)
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():  # resizing once on load == resizing on the fly, as released
        assert (at_384(x) - source(x)).abs().max() <= 1e-4


def test_num_classes_and_in_chans_adapt(tmp_path):
    source = timm.create_model("hornet_micro_gf")
    path = _released_file(tmp_path, {"model": source.state_dict()})
    model = timm.create_model(
        "hornet_micro_gf", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=10, in_chans=1
    )
    assert model.head.out_features == 10 and model.downsample_layers[0][0].in_channels == 1
    key = "stages.2.1.gnconv.proj_in.weight"
    torch.testing.assert_close(model.state_dict()[key], source.state_dict()[key])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint file not found: .*nope\.pth"):
        timm.create_model(
            "hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "nope.pth"))
        )


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable PyTorch checkpoint"):
        timm.create_model("hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_checkpoint_for_another_architecture_names_the_differences(tmp_path):
    path = _released_file(tmp_path, {"model": timm.create_model("hornet_micro_7x7").state_dict()})
    with pytest.raises(ValueError, match="does not fit hornet_micro_gf") as err:
        timm.create_model("hornet_micro_gf", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    message = str(err.value)
    assert "missing keys: stages.2.0.gnconv.dwconv.complex_weight" in message
    assert "unexpected keys: stages.2.0.gnconv.dwconv.bias" in message
    path = _released_file(tmp_path, {"model": timm.create_model("hornet_nano_7x7").state_dict()}, "nano.pth")
    with pytest.raises(ValueError, match=r"shape mismatches: downsample_layers.0.0.bias \(32,\) vs model \(16,\)"):
        timm.create_model("hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_bad_weights_choice():
    with pytest.raises(ValueError, match=r"weights must be one of \('raw', 'ema'\)"):
        timm.create_model("hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=dict(file="x", weights="best"))


def test_a_run_s_own_one_channel_checkpoint_loads_without_timm_s_channel_message(tmp_path, caplog):
    """The weights' own channels are declared to timm (a Fashion-MNIST run's stem takes 1), so loading says nothing."""
    import logging

    trained = timm.create_model("hornet_micro_7x7", in_chans=1, num_classes=10)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in trained.state_dict().items()}}, path)
    with caplog.at_level(logging.WARNING):
        model = timm.create_model(
            "hornet_micro_7x7", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), in_chans=1, num_classes=10
        )
    assert not [r for r in caplog.records if "source channels" in r.getMessage()], caplog.text
    torch.testing.assert_close(model.stem_weight(), trained.stem_weight())

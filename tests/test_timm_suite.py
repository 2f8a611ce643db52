"""timm's own model test suite (tests/test_models.py in timm's repository), applied to every hornet_* model.

The checks mirror timm's: forward, backward (every parameter gets a gradient), default cfgs (pool size, head
reset, classifier and first conv names), TorchScript, features_only, forward_intermediates, FX forward/backward.
Input sizes follow timm's targets. The full-size released variants carry the ``slow`` mark.
"""

import math

import pytest
import timm
import torch
from timm.models import FeatureInfo
from timm.models._features_fx import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from hornet.models import VARIANTS

TARGET_FWD, TARGET_BWD, TARGET_JIT, TARGET_FEAT, TARGET_FX = 384, 128, 128, 96, 128
MAX_FWD_OUT = 448


def _names():
    names = []
    for name in VARIANTS:  # the optimized models; the *_reference twins are checked against them elsewhere
        heavy = VARIANTS[name].released and not name.startswith("hornet_tiny")
        names.append(pytest.param(name, marks=pytest.mark.slow) if heavy else name)
    return names


MODELS = _names()


def _input_size(model, target):
    size = model.pretrained_cfg["input_size"]
    return tuple(min(s, target) for s in size) if max(size) > target else size


@pytest.mark.parametrize("name", MODELS)
def test_model_forward(name):
    model = timm.create_model(name).eval()
    x = torch.randn(1, *_input_size(model, TARGET_FWD))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 1000) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_backward(name):
    model = timm.create_model(name, num_classes=42).train()
    x = torch.randn(2, *_input_size(model, TARGET_BWD))
    out = model(x)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert out.shape == (2, 42) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_default_cfgs(name):
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    assert model.num_classes == 1000 and model.num_features > 0 and model.head_hidden_size > 0
    for key in ("first_conv", "classifier", "mean", "std", "crop_pct", "input_size", "pool_size", "interpolation"):
        assert cfg.get(key) is not None, key
    state_dict = model.state_dict()
    assert cfg["classifier"] + ".weight" in state_dict and cfg["first_conv"] + ".weight" in state_dict
    x = torch.randn(1, *tuple(min(s, MAX_FWD_OUT) for s in cfg["input_size"]))
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[-2:] == tuple(cfg["pool_size"]) and features.shape[1] == model.num_features
        assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")
        out = model(x)
        assert out.ndim == 4 and out.shape[-2:] == tuple(cfg["pool_size"])


@pytest.mark.parametrize("name", MODELS)
def test_model_in_chans_and_num_classes(name):
    model = timm.create_model(name, in_chans=1, num_classes=10, device="meta")
    assert model.downsample_layers[0][0].in_channels == 1 and model.head.out_features == 10


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_torchscript(name):
    with timm.set_scriptable(True):
        model = timm.create_model(name).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, *_input_size(model, TARGET_JIT))
    with torch.no_grad():
        out = scripted(x)
        assert out.shape == (1, 1000) and not torch.isnan(out).any()
        torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_features(name):
    model = timm.create_model(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 4
    x = torch.randn(1, *_input_size(model, TARGET_FEAT))
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == len(channels)
    for c, r, o in zip(channels, reductions, outputs):
        assert o.shape[1] == c
        assert o.shape[-2] <= math.ceil(x.shape[-2] / r) + 1 and o.shape[-1] <= math.ceil(x.shape[-1] / r) + 1
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_intermediates(name):
    model = timm.create_model(name).eval()
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(1, *_input_size(model, TARGET_FEAT))
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(x)
        assert len(intermediates) == len(info.channels())
        for c, r, o in zip(info.channels(), info.reduction(), intermediates):
            assert o.shape[1] == c and o.shape[-1] <= math.ceil(x.shape[-1] / r) + 1
        torch.testing.assert_close(output, model.forward_features(x))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [o.shape[1] for o in last_two] == info.channels()[-2:]


def _fx_model(model):
    kwargs = dict(
        leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True
    )
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=kwargs)
    return create_feature_extractor(
        model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=kwargs
    )


@pytest.mark.parametrize("name", MODELS)
def test_model_forward_fx(name):
    model = timm.create_model(name).eval()
    x = torch.randn(1, *_input_size(model, TARGET_FX))
    with torch.no_grad():
        expected = model(x)
        traced = next(iter(_fx_model(model)(x).values()))
    assert torch.equal(traced, expected)


@pytest.mark.parametrize("name", MODELS)
def test_model_backward_fx(name):
    model = timm.create_model(name, num_classes=42).train()
    traced = _fx_model(model)
    out = next(iter(traced(torch.randn(2, *_input_size(model, TARGET_BWD))).values()))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters()) and out.shape == (2, 42)

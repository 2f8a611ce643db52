"""The GPU speed work, checked on the CPU: the step budget by op category, the real-valued GF filter, pointwise
convolutions as matmuls, and per-block compilation."""

import pytest
import torch

from hornet.analysis.measure.benchmark import BenchConfig, profile_model_step
from hornet.analysis.measure.step_profile import CATEGORIES, op_category
from hornet.cli import main


@pytest.mark.parametrize(
    ("name", "shapes", "category"),
    [
        ("aten::convolution_backward", [[8, 24, 16, 16], [8, 24, 16, 16], [24, 1, 7, 7]], "depthwise conv"),
        ("aten::mkldnn_convolution", [[8, 24, 16, 16], [24, 1, 7, 7], [24]], "depthwise conv"),
        ("aten::cudnn_convolution", [[8, 24, 16, 16], [48, 24, 1, 1]], "matmul / dense conv"),
        ("aten::mkldnn_convolution", [[8, 1, 32, 32], [16, 1, 2, 2], [16]], "matmul / dense conv"),  # a 1-channel stem
        ("aten::addmm", [[64], [512, 16], [16, 64]], "matmul / dense conv"),
        ("aten::_fft_r2c", [[8, 32, 14, 14]], "FFT"),
        ("aten::copy_", [[8, 16], [8, 16]], "copies and layout"),
        ("aten::native_layer_norm", [[8, 16, 16, 16]], "elementwise and norms"),
        ("aten::gelu_backward", [[8, 16], [8, 16]], "elementwise and norms"),
        ("aten::view", [[8, 16]], "framework and other"),
        ("aten::_foreach_lerp_", [], "optimizer"),
        ("autograd::engine::evaluate_function: MulBackward0", [], "framework and other"),
    ],
)
def test_ops_fall_into_their_categories(name, shapes, category):
    assert op_category(name, shapes) == category


def test_a_training_step_profile_adds_up_and_finds_the_depthwise_convolutions():
    config = BenchConfig(batch_size=8, img_size=32, steps=1, warmup=1)
    hornet = profile_model_step("hornet_micro_7x7", "train", config)
    assert list(hornet.categories) == list(CATEGORIES)
    assert sum(hornet.shares().values()) == pytest.approx(100.0)
    shares = hornet.shares()
    for category in ("matmul / dense conv", "depthwise conv", "elementwise and norms", "optimizer"):
        assert shares[category] > 1.0, (category, shares)
    assert shares["FFT"] == 0.0  # no GF mixer in the 7x7 model
    assert all(category in CATEGORIES for _, category, _ in hornet.top_ops)


def test_bench_profile_prints_every_category(capsys):
    argv = ["bench", "hornet_micro_gf", "--profile", "--img-size", "32", "--batch-size", "4", "--steps", "1"]
    assert main([*argv, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "category,hornet_micro_gf ms,hornet_micro_gf %"
    assert [line.split(",")[0] for line in lines[1:]] == [*CATEGORIES, "step"]
    assert float(lines[-1].split(",")[2]) == 100.0

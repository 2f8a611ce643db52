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


@pytest.mark.parametrize("size", [(2, 2), (4, 4), (7, 7), (14, 14), (5, 8), (8, 5)])
@pytest.mark.parametrize("path", ["dense", "dft"])
def test_every_gf_filter_path_equals_the_fft_in_float64_values_and_gradients(size, path):
    from hornet.ops.mixers import global_filter

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(3, size[0], size[1] // 2 + 1, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    upstream = torch.randn(2, 3, *size, dtype=torch.float64, generator=generator)
    results = []
    for each in (path, "fft"):
        out = global_filter(x, weight, each)
        grads = torch.autograd.grad((out * upstream).sum(), (x, weight))
        results.append((out, *grads))
    for mine, fft in zip(*results):
        torch.testing.assert_close(mine, fft, rtol=0, atol=1e-10)


def test_the_real_dft_is_torch_fft_in_every_norm():
    from hornet.ops.real_dft import irdft2, rdft2

    for size in [(1, 1), (3, 1), (6, 4), (7, 9)]:
        x = torch.randn(2, *size, dtype=torch.float64)
        half = torch.randn(2, size[0], size[1] // 2 + 1, 2, dtype=torch.float64)
        for norm in ("ortho", "backward", "forward"):
            spectrum = torch.fft.rfft2(x, norm=norm)
            real, imag = rdft2(x, norm)
            torch.testing.assert_close((real, imag), (spectrum.real, spectrum.imag), rtol=0, atol=1e-12)
            expected = torch.fft.irfft2(torch.complex(half[..., 0], half[..., 1]), s=size, norm=norm)
            torch.testing.assert_close(irdft2(half[..., 0], half[..., 1], size, norm), expected, rtol=0, atol=1e-12)


def test_bench_races_the_gf_filter_paths_on_the_model_s_maps(capsys):
    argv = ["bench", "hornet_micro_gf", "--filter-paths", "--img-size", "32", "--batch-size", "4", "--rounds", "1"]
    assert main([*argv, "--format", "csv", "--steps", "1", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "map,channels,batch,dense_ms,dft_ms,fft_ms,fastest,auto"
    assert {line.split(",")[0] for line in lines[1:]} == {"4x4", "2x2"}  # the GF stages 3-4 at 32 px, stem 2
    assert all(line.endswith(",dense") for line in lines[1:])  # tiny maps: one circulant matrix on a CPU


def test_under_cpu_autocast_the_depthwise_convolutions_compute_in_fp32():
    from torch.utils._python_dispatch import TorchDispatchMode

    from hornet.ops import GnConv

    seen = []

    class RecordConvolutions(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "convolution" in func.__name__:
                weight = args[1]
                seen.append(("depthwise" if weight.shape[1] == 1 else "dense", args[0].dtype))
            return func(*args, **(kwargs or {}))

    for mixer in ("dw7", "gf"):
        seen.clear()
        block = GnConv(16, order=3, mixer=mixer, feature_size=(8, 8))
        x = torch.randn(2, 16, 8, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16), RecordConvolutions():
            out = block(x)
        assert out.dtype == torch.bfloat16  # the rest of the block still runs in bf16
        assert ("depthwise", torch.float32) in seen and ("dense", torch.bfloat16) in seen, seen
        assert ("depthwise", torch.bfloat16) not in seen, seen
        torch.testing.assert_close(out.float(), block(x), rtol=0.05, atol=0.05)  # bf16 rounding in the 1x1s only


def test_model_blocks_are_the_repeated_units_of_hornet_and_timm_hosts():
    import timm

    from hornet.models import HorBlock, model_blocks

    assert [type(b) for b in model_blocks(timm.create_model("hornet_tiny_7x7"))] == [HorBlock] * 25
    assert len(model_blocks(timm.create_model("convnext_tiny"))) == 18  # 3 + 3 + 9 + 3
    assert len(model_blocks(timm.create_model("resnet18"))) == 0  # compile_model compiles it whole


@pytest.mark.slow
def test_compiled_blocks_equal_eager_with_one_graph_per_stage_and_no_recompiles():
    """Inductor on the CPU (about 40 s): at 96 px the stage-3 GF map is 12x12, past the circulant path, so the compiled
    graph filters through the real DFT where eager uses the FFT."""
    import timm
    from torch._dynamo.utils import counters

    from hornet.models import compile_model

    torch._dynamo.reset()
    counters.clear()
    eager = timm.create_model("hornet_micro_gf", num_classes=10, img_size=96)
    compiled = timm.create_model("hornet_micro_gf", num_classes=10, img_size=96)
    compiled.load_state_dict(eager.state_dict())
    with torch.no_grad():  # visible layer scales, so every branch matters
        for model in (eager, compiled):
            for key, p in model.named_parameters():
                if "gamma" in key:
                    p.fill_(0.5)
    compile_model(compiled)
    x = torch.randn(2, 3, 96, 96)
    graphs = []
    for _ in range(3):
        outputs = []
        for model in (eager, compiled):
            model.zero_grad()
            out = model(x)
            out.square().sum().backward()
            outputs.append(out)
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [4, 4, 4]  # one per stage, made in the first step only
    assert not counters["graph_break"], dict(counters["graph_break"])
    for (key, p), q in zip(eager.named_parameters(), compiled.parameters()):
        scale = p.grad.abs().max().clamp_min(1e-3)
        assert (q.grad - p.grad).abs().max() / scale <= 1e-4, key

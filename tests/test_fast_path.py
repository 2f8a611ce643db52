"""The optimized HorNet computes the released function: equal to the plain reference, forward and backward."""

import pytest
import timm
import torch

from hornet.cli import main
from hornet.data.fashion_mnist import DEBIAN_FASHION_MNIST
from hornet.models import create_model

HAS_FASHION_MNIST = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()


def _pair(name, **kwargs):
    fast = timm.create_model(name, **kwargs)
    reference = create_model(f"{name}_reference", **kwargs)  # the transcription, kept out of timm's registry
    reference.load_state_dict(fast.state_dict())
    with torch.no_grad():  # visible layer scales, so every branch matters
        for model in (fast, reference):
            for key, p in model.named_parameters():
                if "gamma" in key:
                    p.fill_(0.5)
    return fast, reference


def _assert_grads_close(fast, reference):
    reference_params = dict(reference.named_parameters())
    for key, p in fast.named_parameters():
        expected = reference_params[key].grad
        scale = expected.abs().max().clamp_min(1e-3)
        assert (p.grad - expected).abs().max() / scale <= 1e-4, key


@pytest.mark.parametrize("name", ["hornet_micro_7x7", "hornet_micro_gf"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_equals_reference_forward_and_backward(name, channels_last):
    fast, reference = _pair(name, num_classes=10)
    x = torch.randn(4, 3, 32, 32)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
        x_fast = x.contiguous(memory_format=torch.channels_last)
    else:
        x_fast = x
    y_fast, y_ref = fast(x_fast), reference(x)
    assert (y_fast - y_ref).abs().max() <= 1e-4
    y_fast.square().mean().backward()
    y_ref.square().mean().backward()
    _assert_grads_close(fast, reference)


@pytest.mark.parametrize("name", ["hornet_tiny_7x7", "hornet_tiny_gf"])
def test_fast_equals_reference_full_size(name):
    fast, reference = _pair(name)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (fast.eval()(x) - reference.eval()(x)).abs().max() <= 1e-4


@pytest.mark.slow
def test_compiled_tiny_model_matches_eager():
    model = timm.create_model("hornet_micro_7x7", num_classes=10).eval()
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_bench_prints_the_expected_columns(capsys):
    argv = ["bench", "hornet_micro_7x7", "hornet_micro_7x7_reference", "--img-size", "32", "--batch-size", "2"]
    argv += ["--rounds", "1", "--steps", "1", "--warmup", "1", "--format", "csv", "--peak"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "model,mode,img_s,min_max,ratio,GMACs,peak_mem_MB,GFLOP_s,util_%"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("hornet_micro_7x7", "train"),
        ("hornet_micro_7x7_reference", "train"),
        ("hornet_micro_7x7", "infer"),
        ("hornet_micro_7x7_reference", "infer"),
    ]
    assert all(float(r[2]) > 0 and float(r[6]) >= 0 and float(r[8]) > 0 for r in rows)
    assert rows[0][4] == "1.0" and rows[2][4] == "1.0"


def test_bench_rejects_bad_input(capsys):
    assert main(["bench", "hornet_micro_7x7", "--batch-size", "0"]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err


def _short_training_losses(precision_context, steps=8):
    torch.manual_seed(0)
    model = timm.create_model("hornet_micro_gf", num_classes=10, in_chans=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 32, 32, generator=generator)
    y = torch.randint(0, 10, (16,), generator=generator)
    losses = []
    for _ in range(steps):
        with precision_context():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_bf16_mixed_training_tracks_fp32():
    import contextlib

    fp32 = _short_training_losses(contextlib.nullcontext)
    bf16 = _short_training_losses(lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert fp32[-1] < fp32[0]  # it learns
    assert abs(bf16[-1] - fp32[-1]) / fp32[-1] < 0.02, (fp32, bf16)


def test_grad_checkpointing_lowers_peak_memory():
    from hornet.analysis.measure.benchmark import BenchConfig, measure_peak_memory

    config = dict(batch_size=8, img_size=192, rounds=1, steps=1)  # activations dominate the footprint
    plain = measure_peak_memory("hornet_nano_7x7", "train", BenchConfig(**config))
    checkpointed = measure_peak_memory("hornet_nano_7x7", "train", BenchConfig(grad_checkpointing=True, **config))
    # RSS carries allocator and oneDNN scratch too: 0.58-0.69 seen on an Intel Xeon at 192 px, 0.80 in CI at 128 px
    assert checkpointed < 0.85 * plain, (plain, checkpointed)


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="Debian's dataset-fashion-mnist is not installed")
def test_bench_fit_compares_hornet_fit_with_a_plain_loop(capsys):
    argv = ["bench", "hornet_micro_7x7", "--mode", "fit", "--images", "512", "--batch-size", "32", "--rounds", "1"]
    assert main([*argv, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "loop,img_s,min_max,ratio" and lines[-1].startswith("hornet fit / plain loop: ")
    plain, fit = (line.split(",") for line in lines[1:3])
    assert (plain[0], fit[0]) == ("plain PyTorch loop", "hornet fit") and plain[3] == "1.0"
    assert float(plain[1]) > 0 and float(fit[1]) > 0
    assert float(fit[3]) == pytest.approx(float(fit[1]) / float(plain[1]), abs=2e-3)  # the ratio is fit / plain
    assert float(lines[-1].rpartition(": ")[2]) == float(fit[3])


def test_hor_block_has_one_path_whatever_the_grad_mode():
    """The block's kernels follow its mode (train: matmuls; eval: 1x1 convolutions), never grad mode: FX traces the
    same graph with and without grad, and both modes compute the same block."""
    from hornet.models.hornet import HorBlock

    block = HorBlock(32, order=3, mixer="dw7", scale=1 / 3, layer_scale_init_value=1.0).eval()
    with torch.no_grad():
        without_grad = torch.fx.symbolic_trace(block).code
    assert torch.fx.symbolic_trace(block).code == without_grad
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(block(x), block.train()(x), rtol=1e-5, atol=1e-5)

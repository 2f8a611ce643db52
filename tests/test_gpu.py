"""What can only break on a GPU (marked ``gpu``; skipped without CUDA, run by `make test-gpu`): cuFFT in half
precision at the GF filter's non-power-of-two sizes, torch.compile of a GF model (whole and block by block), a
bf16-mixed fit."""

import csv

import pytest
import timm
import torch
from fit_args import tiny_fit

from hornet.cli import main

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gf_under_autocast_at_sizes_cufft_refuses_in_half_precision(dtype):
    """At 224 px the GF maps are 14x14 and 7x7: cuFFT takes only powers of two in half precision, so the FFT must run
    in fp32 inside autocast; the result matches fp32 within half-precision noise, and gradients are finite."""
    torch.manual_seed(0)
    model = timm.create_model("hornet_tiny_gf", num_classes=10).cuda()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        reference = model(x)
    with torch.autocast("cuda", dtype=dtype):
        out = model(x)
    out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=0.1)
    assert model.stages[2][0].gnconv.dwconv.complex_weight.grad.dtype == torch.float32


def test_a_compiled_gf_model_equals_eager():
    torch.manual_seed(0)
    model = timm.create_model("hornet_micro_gf", num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3)


def test_a_gf_model_compiled_block_by_block_trains_like_eager_under_bf16():
    """compile_model at 224 px under bf16 autocast: the 14x14 GF map takes the real DFT inside the graph, the FFT in
    eager; the loss matches and identical steps add no graph."""
    from torch._dynamo.utils import counters

    from hornet.models import compile_model

    torch.manual_seed(0)
    torch._dynamo.reset()
    counters.clear()
    eager = timm.create_model("hornet_tiny_gf", num_classes=10).cuda()
    compiled = timm.create_model("hornet_tiny_gf", num_classes=10).cuda()
    compiled.load_state_dict(eager.state_dict())
    compile_model(compiled)
    x = torch.randn(8, 3, 224, 224, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    graphs = []
    for _ in range(3):
        losses = []
        for model in (eager, compiled):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) < 1e-2 * abs(losses[0]), losses
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] == graphs[1] == graphs[2], graphs


def test_a_bf16_mixed_fit_on_cuda_learns(tmp_path):
    args = ["fit", *tiny_fit(train_size=512, epochs=4, backbone="hornet_micro_gf"), "--trainer.accelerator", "gpu"]
    args += ["--trainer.devices", "1", "--trainer.precision", "bf16-mixed", "--model.recipe.lr", "3e-3"]
    args += ["--runs_dir", str(tmp_path), "--run_name", "bf16"]
    assert main(args) == 0
    with (tmp_path / "bf16" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses

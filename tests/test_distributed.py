"""Scale-out through Lightning: DDP on CPU (gloo), suites under DDP, SLURM requeue, FSDP / DeepSpeed on a GPU."""

import csv
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
import yaml
from fit_args import tiny_fit
from signal_at_step import signal_at_step

from hornet.cli import main
from hornet.ops.mixers import GlobalLocalFilter

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "experiments" / "slurm"
DDP = ["--config", str(ROOT / "experiments" / "strategies" / "ddp.yaml"), "--trainer.accelerator", "cpu"]
TINY = tiny_fit(train_size=128, batch_size=None, summary=False, lr="1e-1")  # 1e-1 per 4096: 6.25e-4 at batch 16


def _hornet(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`hornet ...` in a subprocess (Lightning's DDP launcher starts the other ranks by re-running its command)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hornet.cli", *args], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _losses(run: Path) -> list[float]:
    """The training loss of every step (under DDP the mean over all ranks: it is logged with sync_dist)."""
    with (run / "metrics.csv").open() as handle:
        return [float(row["train/loss_step"]) for row in csv.DictReader(handle) if row.get("train/loss_step")]


@pytest.mark.slow
def test_ddp_on_two_processes_follows_one_process_with_the_same_global_batch(tmp_path):
    """2 ranks x batch 8 = 1 process x batch 16: same samples per step, same lr (linear rule), same weights."""
    one = _hornet("fit", *TINY, "--data.init_args.batch_size", "16", "--runs_dir", str(tmp_path), "--run_name", "one")
    assert one.returncode == 0, one.stderr
    two = _hornet(
        "fit", *TINY, *DDP, "--trainer.devices", "2", "--data.init_args.batch_size", "8",
        "--runs_dir", str(tmp_path), "--run_name", "two",
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    single, ddp = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(single) == len(ddp) == 2 * 128 // 16
    print("max |loss difference| per step:", max(abs(a - b) for a, b in zip(single, ddp)))
    # tolerance: the same sums in another order (per rank, then all-reduced) through 16 AdamW steps (measured 2.4e-7)
    torch.testing.assert_close(torch.tensor(ddp), torch.tensor(single), rtol=0, atol=1e-5)
    with (tmp_path / "two" / "metrics.csv").open() as handle:
        lrs = [float(row["lr"]) for row in csv.DictReader(handle) if row.get("lr")]
    assert max(lrs) == pytest.approx(1e-1 * 16 / 4096, rel=1e-3)  # the linear rule saw the global batch, 2 x 8


@pytest.mark.slow
def test_a_suite_under_ddp_writes_each_run_once(tmp_path):
    dw3 = {"model.backbone_kwargs.mixers": ["dw3"] * 4}
    variants = [{"name": "dw7", "overrides": {}}, {"name": "dw3", "overrides": dw3}]
    suite = {"ablation": {"name": "ddp", "seeds": [0], "output_dir": str(tmp_path / "suite"), "variants": variants}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    args = ["fit", *TINY, *DDP, "--trainer.devices", "2", "--data.init_args.batch_size", "8"]
    result = _hornet(*args, "--config", str(tmp_path / "suite.yaml"), "--trainer.max_epochs", "1")
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "suite" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(row.endswith(",ok") for row in rows[1:]), rows
    for variant in ("dw7", "dw3"):
        state = torch.load(tmp_path / "suite" / variant / "seed0" / "checkpoints" / "last.ckpt", weights_only=False)
        assert state["global_step"] == 128 // 16  # one epoch of the global batch: trained once, by both ranks


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_both(tmp_path):
    args = ["fit", *TINY, *DDP, "--trainer.devices", "2", "--data.init_args.batch_size", "8"]
    args += ["--data.class_path", "poisoned_data.NaNOnRankOne", "--runs_dir", str(tmp_path)]
    start = time.monotonic()
    result = _hornet(*args, timeout=240)  # tests/helpers is on PYTHONPATH (conftest.py)
    assert result.returncode == 1, result.stderr
    assert "non-finite training loss" in result.stderr and "at step 0" in result.stderr
    assert "Traceback" not in result.stderr.split("hornet: error:")[-1]
    assert time.monotonic() - start < 200  # no rank left waiting for the other


def test_the_gf_filter_works_as_a_view_at_an_odd_offset_of_a_flat_buffer():
    """FSDP / DeepSpeed keep parameters as views into flat buffers; view_as_complex refuses an odd storage offset."""
    torch.manual_seed(0)
    reference = GlobalLocalFilter(8, feature_size=(8, 8))
    shifted = GlobalLocalFilter(8, feature_size=(8, 8))
    shifted.load_state_dict(reference.state_dict())
    weight = reference.complex_weight.detach()
    flat = torch.zeros(1 + weight.numel())
    flat[1:] = weight.flatten()
    shifted.complex_weight = torch.nn.Parameter(flat[1:].view_as(weight))
    assert shifted.complex_weight.storage_offset() == 1
    with pytest.raises(RuntimeError):
        torch.view_as_complex(shifted.complex_weight)  # the pitfall this layer must avoid
    x = torch.randn(2, 8, 8, 8)
    out = shifted(x)
    torch.testing.assert_close(out, reference(x))
    out.square().sum().backward()
    assert shifted.complex_weight.grad is not None and torch.isfinite(shifted.complex_weight.grad).all()


def test_gf_filters_stay_fp32_when_the_model_is_cast_to_half_precision(tmp_path):
    model = timm.create_model("hornet_micro_gf", img_size=32, num_classes=10).to(torch.bfloat16)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if n.endswith("complex_weight")} == {torch.float32}
    assert {d for n, d in dtypes.items() if not n.endswith("complex_weight")} == {torch.bfloat16}
    out = model(torch.randn(2, 3, 32, 32, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    # Lightning's "bf16-true" casts the module the same way: the trained filters are saved in fp32
    args = ["fit", *TINY, "--model.backbone", "hornet_micro_gf", "--trainer.precision", "bf16-true"]
    args += ["--trainer.max_epochs", "1", "--data.init_args.batch_size", "16", "--runs_dir", str(tmp_path)]
    assert main(args) == 0
    state = _weights(tmp_path / "default")
    assert {v.dtype for k, v in state.items() if k.endswith("complex_weight")} == {torch.float32}
    assert state["backbone.head.weight"].dtype == torch.bfloat16


def test_slurm_templates_are_valid_bash_and_pass_the_array_index():
    for script in ("fit.sbatch", "suite_array.sbatch"):
        assert subprocess.run(["bash", "-n", str(SLURM / script)]).returncode == 0, script
    suite = (SLURM / "suite_array.sbatch").read_text()
    assert '--ablation.only "$SLURM_ARRAY_TASK_ID"' in suite and "#SBATCH --signal=USR1@" in suite
    fit = (SLURM / "fit.sbatch").read_text()
    assert "#SBATCH --requeue" in fit and '--trainer.num_nodes "$SLURM_JOB_NUM_NODES"' in fit


FAKE_SLURM = {  # what srun sets for a one-task job step: Lightning's SLURMEnvironment takes over
    "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "hornet-fit", "SLURM_JOB_ID": "4242",
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
    "SLURM_JOB_NUM_NODES": "1",
}  # fmt: skip


@pytest.mark.slow
def test_a_slurm_job_checkpoints_on_sigusr1_and_its_requeued_job_resumes(tmp_path):
    args = ["fit", *TINY, "--data.init_args.batch_size", "8", "--data.init_args.train_size", "1024"]
    args += ["--runs_dir", str(tmp_path), "--run_name", "slurm"]
    # SLURM's warning before the time limit (#SBATCH --signal=USR1@120) at step 20, then its SIGTERM at step 40
    signals = [signal_at_step(20, tmp_path / "usr1", "SIGUSR1"), signal_at_step(40, tmp_path / "term")]
    args += ["--config", yaml.safe_dump({"trainer": {"callbacks": signals}})]
    stopped = _hornet(*args, env=FAKE_SLURM)
    assert stopped.returncode == 143, stopped.stderr
    hpc = torch.load(tmp_path / "slurm" / "hpc_ckpt_1.ckpt", weights_only=False)
    assert hpc["global_step"] == 20
    metrics = tmp_path / "slurm" / "metrics.csv"

    requeued = _hornet(*args, env={**FAKE_SLURM, "SLURM_RESTART_COUNT": "1"})  # the same command, started again
    assert requeued.returncode == 0, requeued.stderr
    final = torch.load(tmp_path / "slurm" / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 2 * 1024 // 8 and final["epoch"] == 1  # resumed, not restarted
    rows = metrics.read_text().splitlines()
    assert rows[1].split(",")[0] == "0"  # metrics.csv kept the first job's rows


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16-mixed", "32"])
def test_fsdp_on_one_gpu_trains_gf_with_clipping_and_keeps_the_filter_fp32(tmp_path, precision):
    fsdp = ["--config", str(ROOT / "experiments" / "strategies" / "fsdp.yaml"), "--trainer.accelerator", "gpu"]
    fsdp += ["--trainer.devices", "1"]
    args = ["fit", *TINY, *fsdp, "--model.backbone", "hornet_micro_gf", "--trainer.precision", precision]
    args += ["--trainer.gradient_clip_val", "1.0", "--data.init_args.batch_size", "16", "--runs_dir", str(tmp_path)]
    assert main([*args, "--run_name", "fsdp"]) == 0  # without it the run is named after the last config: fsdp
    state = _weights(tmp_path / "fsdp")
    filters = [v for k, v in state.items() if k.endswith("complex_weight")]
    assert filters and all(v.dtype == torch.float32 for v in filters)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero2_on_one_gpu(tmp_path):
    ds = ["--config", str(ROOT / "experiments" / "strategies" / "deepspeed.yaml"), "--trainer.accelerator", "gpu"]
    ds += ["--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
    args = ["fit", *TINY, *ds, "--model.backbone", "hornet_micro_gf", "--data.init_args.batch_size", "16"]
    assert main([*args, "--runs_dir", str(tmp_path)]) == 0

"""Throughput, peak memory and model-FLOP utilisation of timm models, raced fairly.

Models take turns in a shuffled order every round (after warm-up), so drift in machine speed hits all of them alike;
the reported figure is the median over rounds. Peak memory on CPU comes from a fresh subprocess per model (the
process maximum RSS never resets); on CUDA from ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hornet.analysis.measure.complexity import profile_model
from hornet.analysis.measure.step_profile import StepProfile, profile_step
from hornet.models import compile_model, create_model, input_size_kwargs

__all__ = [
    "PRECISIONS",
    "BenchConfig",
    "BenchResult",
    "build_for_bench",
    "inference_img_per_s",
    "matmul_peak_gflops",
    "peak_rss_mb",
    "plain_loop_img_per_s",
    "profile_model_step",
    "reset_peak_rss",
    "run_benchmark",
    "timed_seconds",
]

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
MODES = ("train", "infer")


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int = 16
    img_size: int = 224
    channels_last: bool = False
    compile: bool = False
    grad_checkpointing: bool = False
    precision: str = "32"
    device: str = "cpu"
    rounds: int = 5
    steps: int = 2  # timed iterations per model per round
    warmup: int = 2

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        for key in ("batch_size", "img_size", "rounds", "steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(self, key)}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")


@dataclass
class BenchResult:
    model: str
    mode: str
    img_per_s: float
    img_per_s_all: list[float]
    gmacs: float
    peak_mem_mb: float | None = None


def _autocast(config: BenchConfig) -> contextlib.AbstractContextManager:
    device_type = torch.device(config.device).type
    if config.precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if config.precision == "16-mixed":
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()


def build_for_bench(name: str, config: BenchConfig) -> nn.Module:
    # models built for an input size (GF filters, Swin windows) get the benchmark's, as training builds them
    model = create_model(name, **input_size_kwargs(name, config.img_size)).to(config.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _make_step(model: nn.Module, mode: str, config: BenchConfig) -> Callable[[], None]:
    """One timed unit of work: inference forward, or forward + loss + backward + AdamW step."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    x = torch.randn(config.batch_size, 3, config.img_size, config.img_size, device=config.device)
    x = x.contiguous(memory_format=memory_format)
    runner = compile_model(model) if config.compile else model  # block by block, in place
    if mode == "infer":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), _autocast(config):
                runner(x)

        return step
    model.train()
    target = torch.randint(0, 1000, (config.batch_size,), device=config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step() -> None:
        with _autocast(config):
            loss = nn.functional.cross_entropy(runner(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_seconds(step: Callable[[], None], steps: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def inference_img_per_s(model: nn.Module, x: torch.Tensor, *, steps: int = 5, warmup: int = 2) -> float:
    """Images per second of ``model`` in eval mode on the batch ``x`` (on x's device): median of ``steps`` timings."""
    was_training = model.training
    model.eval()
    device = str(x.device)

    def step() -> None:
        with torch.inference_mode():
            model(x)

    for _ in range(warmup):
        step()
    rates = [len(x) / timed_seconds(step, 1, device) for _ in range(steps)]
    model.train(was_training)
    return statistics.median(rates)


def plain_loop_img_per_s(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    lr: float,
    weight_decay: float,
    clip: float | None,
    label_smoothing: float = 0.0,
    warmup: int = 5,
    seed: int = 0,
) -> float:
    """Training images per second of the plainest loop over ``images`` (N, C, H, W) held in memory: a shuffled batch
    gathered by index, forward, cross-entropy, backward, gradient clipping by norm, AdamW; one pass, timed after
    ``warmup`` steps. The yardstick `hornet bench --mode fit` holds `hornet fit` to."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    steps = len(images) // batch_size
    if steps <= warmup:
        raise ValueError(f"{len(images)} images make {steps} batches of {batch_size}: need more than {warmup}")
    start = 0.0
    for step in range(steps):
        if step == warmup:
            start = time.perf_counter()
        index = order[step * batch_size : (step + 1) * batch_size]
        loss = nn.functional.cross_entropy(model(images[index]), labels[index], label_smoothing=label_smoothing)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (steps - warmup) * batch_size / (time.perf_counter() - start)


def profile_model_step(name: str, mode: str, config: BenchConfig) -> StepProfile:
    """The op-category budget of one ``mode`` step of ``name`` (``config.steps`` profiled steps after warm-up)."""
    step = _make_step(build_for_bench(name, config), mode, config)
    for _ in range(config.warmup):
        step()
    return profile_step(step, device=config.device, steps=config.steps)


def run_benchmark(
    names: Sequence[str],
    config: BenchConfig,
    *,
    modes: Sequence[str] = MODES,
    measure_memory: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Race ``names`` in every mode; returns one result per (model, mode), in the order given."""
    results = []
    for mode in modes:
        steps = {}
        for name in names:
            steps[name] = _make_step(build_for_bench(name, config), mode, config)
            for _ in range(config.warmup):
                steps[name]()
        timings = {name: [] for name in names}
        for round_index in range(config.rounds):
            order = list(names)
            random.Random(round_index).shuffle(order)
            for name in order:
                seconds = timed_seconds(steps[name], config.steps, config.device)
                timings[name].append(config.batch_size * config.steps / seconds)
            if progress:
                progress(f"{mode}: round {round_index + 1}/{config.rounds}")
        for name in names:
            rates = timings[name]
            gmacs = profile_model(name, img_size=config.img_size).gmacs
            peak = measure_peak_memory(name, mode, config) if measure_memory else None
            results.append(BenchResult(name, mode, statistics.median(rates), rates, gmacs, peak))
        del steps
    return results


def measure_peak_memory(name: str, mode: str, config: BenchConfig) -> float:
    """Peak memory (MB) of ``warmup`` steps of ``name``: CUDA max-allocated, or a fresh process's max RSS growth."""
    if torch.device(config.device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(config.device)
        step = _make_step(build_for_bench(name, config), mode, config)
        step()
        return torch.cuda.max_memory_allocated(config.device) / 2**20
    payload = json.dumps({"name": name, "mode": mode, "config": asdict(config)})
    result = subprocess.run(
        [sys.executable, "-m", "hornet.analysis.measure.benchmark", payload],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory probe for {name} failed: {result.stderr.strip().splitlines()[-1:]}")
    return float(result.stdout.strip().splitlines()[-1])


def _memory_probe(payload: str) -> None:
    import hornet  # noqa: F401  (registers the models in this fresh process)

    spec = json.loads(payload)
    config = BenchConfig(**spec["config"])
    baseline = _proc_status_kib("VmRSS")  # steady footprint after imports, before the model exists
    step = _make_step(build_for_bench(spec["name"], config), spec["mode"], config)
    step()
    step()
    # VmHWM is this process's own high-water mark (getrusage's maxrss would carry the parent's across exec)
    print(max(_proc_status_kib("VmHWM") - baseline, 0) / 1024)


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory on CPU needs Linux)")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: /proc/self/clear_refs), so ``peak_rss_mb`` measures from now on."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM) in MB; None where /proc is unavailable."""
    try:
        return _proc_status_kib("VmHWM") / 1024
    except (OSError, RuntimeError):
        return None


def matmul_peak_gflops(
    dtype: torch.dtype, *, device: str = "cpu", size: int | None = None, seconds: float = 1.0
) -> float:
    """Sustained GFLOP/s of a square matmul in ``dtype``: the machine's practical peak for MFU. The default size is
    1024 on a CPU and 8192 on a GPU, where a smaller product is bound by launches, not by the tensor cores (1024 reached
    89 of the H200's ~790 bf16 TFLOP/s); the GPU queues 8 products between synchronisations."""
    on_gpu = torch.device(device).type != "cpu"
    size = size or (8192 if on_gpu else 1024)
    per_sync = 8 if on_gpu else 1
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    count, elapsed = 0, 0.0
    _sync(device)
    start = time.perf_counter()
    while elapsed < seconds:
        for _ in range(per_sync):
            a @ b
        count += per_sync
        _sync(device)
        elapsed = time.perf_counter() - start
    return 2 * size**3 * count / elapsed / 1e9


if __name__ == "__main__":  # the per-model memory probe: python -m hornet.analysis.measure.benchmark '<json>'
    _memory_probe(sys.argv[1])

"""`hornet bench`: models raced in shuffled rounds (img/s, peak memory, MACs, utilisation); ``--mode fit`` races
`hornet fit` against a plain PyTorch loop over the same model and images."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import fields

from rich.console import Console

from hornet.commands.common import check_model_names
from hornet.errors import UsageError

__all__ = ["add_arguments", "fit_benchmark", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="MODEL", help="timm model names; ratios are against the first")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16; --mode fit: the config's (128)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument(
        "--mode",
        choices=("train", "infer", "both", "fit"),
        default="both",
        help="fit: `hornet fit` (the default config) against a plain PyTorch loop over the same model and data",
    )
    parser.add_argument("--images", type=int, default=20000, help="--mode fit: training images per round")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format for model and input")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"), default="32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds, models taking turns in a shuffled order (5; fit: 2)"
    )
    parser.add_argument("--steps", type=int, default=2, help="timed iterations per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per model first")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--peak", action="store_true", help="measure matmul peak GFLOP/s and report utilisation")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of racing: each op category's share of a step (torch.profiler; the training step unless "
        "--mode infer)",
    )
    parser.add_argument(
        "--filter-paths",
        action="store_true",
        help="instead of racing models: race the GF filter's implementations (dense, dft, fft) on each GF map of "
        "each model, forward + backward",
    )
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table")


def run(args: argparse.Namespace) -> int:
    import torch

    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.measure.benchmark import BenchConfig, matmul_peak_gflops, run_benchmark
    from hornet.analysis.stats.report import render_table

    check_model_names(args.names)
    if args.mode == "fit":
        return _bench_fit(args)
    given = {field.name: getattr(args, field.name) for field in fields(BenchConfig)}
    config = BenchConfig(**{key: value for key, value in given.items() if value is not None})
    console = Console(stderr=True)
    if args.precision == "bf16-mixed" and config.device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        console.print(
            "[yellow]warning:[/] this CPU has no native bf16 (AVX-512 BF16 / AMX): bf16-mixed runs emulated, "
            "slower than fp32"
        )
    if args.profile:
        return _profile(args, config, console)
    if args.filter_paths:
        return _filter_paths(args, config, console)
    peak = None
    if args.peak:
        dtypes = {"32": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
        names = dict.fromkeys(("32", "bf16-mixed", args.precision))  # fp32 and bf16 always, plus the run's own
        peaks = {key: matmul_peak_gflops(dtypes[key], device=args.device) for key in names}
        peak = peaks[args.precision]  # utilisation is against the peak of the precision the models run in
        console.print("matmul peak GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()), highlight=False)
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    with console.status("benchmarking") as status:
        results = run_benchmark(
            args.names, config, modes=modes, measure_memory=not args.no_memory, progress=status.update
        )
    first = {r.mode: r.img_per_s for r in results if r.model == args.names[0]}
    rows = []
    for r in results:
        row = {
            "model": r.model,
            "mode": r.mode,
            "img_s": round(r.img_per_s, 2),
            "min_max": f"{min(r.img_per_s_all):.2f}-{max(r.img_per_s_all):.2f}",
            "ratio": round(r.img_per_s / first[r.mode], 3),
            "GMACs": float(f"{r.gmacs:.4g}"),
            "peak_mem_MB": "-" if r.peak_mem_mb is None else round(r.peak_mem_mb),
        }
        if peak is not None:
            achieved = 2 * r.gmacs * r.img_per_s * (3 if r.mode == "train" else 1)  # GFLOP/s; backward = 2x forward
            row["GFLOP_s"] = round(achieved, 1)
            row["util_%"] = round(100 * achieved / peak, 1)
        rows.append(row)
    title = (
        f"batch {config.batch_size}, {config.img_size} px, precision {config.precision}, {config.device}"
        f"{', channels_last' if args.channels_last else ''}{', compiled' if args.compile else ''}"
        f"{', grad checkpointing' if args.grad_checkpointing else ''};"
        f" median of {config.rounds} rounds"
    )
    render_table(rows, fmt=args.format, title=title)
    return 0


def _profile(args: argparse.Namespace, config, console: Console) -> int:
    """`hornet bench MODEL... --profile`: per op category, milliseconds per step and share of the step, per model;
    then the longest ops of each."""
    from hornet.analysis.measure.benchmark import profile_model_step
    from hornet.analysis.measure.step_profile import CATEGORIES

    mode = "infer" if args.mode == "infer" else "train"
    profiles = {}
    with console.status("profiling") as status:
        for name in args.names:
            status.update(f"profiling {name} ({mode})")
            profiles[name] = profile_model_step(name, mode, config)
    rows = []
    for category in CATEGORIES:
        row = {"category": category}
        for name, profile in profiles.items():
            row[f"{name} ms"] = round(1000 * profile.categories[category], 2)
            row[f"{name} %"] = round(profile.shares()[category], 1)
        rows.append(row)
    step_row = {"category": "step"}
    for name, profile in profiles.items():
        step_row |= {f"{name} ms": round(1000 * profile.total, 2), f"{name} %": 100.0}
    rows.append(step_row)
    clock = "kernel time" if config.device.startswith("cuda") else "CPU self time"
    title = (
        f"{mode} step by op category ({clock}, torch.profiler, mean of {config.steps} steps): batch "
        f"{config.batch_size}, {config.img_size} px, precision {config.precision}, {config.device}"
        f"{', compiled' if args.compile else ''}"
    )
    _titled_table(rows, args.format, title)
    if args.format == "csv":
        return 0  # one table per CSV
    for name, profile in profiles.items():
        top = [{"op": op, "category": category, "ms": round(1000 * s, 2)} for op, category, s in profile.top_ops]
        _titled_table(top, args.format, f"{name}: longest ops per step")
    return 0


def _filter_paths(args: argparse.Namespace, config, console: Console) -> int:
    """`hornet bench MODEL... --filter-paths`: the GF filter's implementations raced on each model's GF maps."""
    from hornet.analysis.measure.filter_paths import race_filter_paths

    for name in args.names:
        with console.status(f"racing the GF filter paths of {name}"):
            rows = race_filter_paths(name, config)
        title = (
            f"{name}: GF filter forward + backward, ms (median of {config.rounds} rounds), {config.device}, "
            f"batch {config.batch_size}, {config.img_size} px"
        )
        _titled_table(rows, args.format, title)
    return 0


def _titled_table(rows: list[dict], fmt: str, title: str) -> None:
    """A table with its title in every format but CSV (markdown tables have no caption: it goes above)."""
    from hornet.analysis.stats.report import render_table

    if fmt == "markdown":
        print(f"\n{title}\n")
    render_table(rows, fmt=fmt, title=title)


def _bench_fit(args: argparse.Namespace) -> int:
    """`hornet bench MODEL --mode fit`: the fit's training throughput as a share of a plain loop's."""
    from hornet.analysis.stats.report import render_table

    if len(args.names) != 1:
        raise UsageError(f"--mode fit takes one model; got {len(args.names)}")
    rounds = args.rounds or 2
    extra = [] if args.batch_size is None else ["--data.init_args.batch_size", str(args.batch_size)]
    with Console(stderr=True).status(f"benchmarking `hornet fit` against a plain loop ({rounds} rounds)"):
        speeds = fit_benchmark(args.names[0], images=args.images, rounds=rounds, extra=extra)
    plain = statistics.median(speeds["plain PyTorch loop"])
    rows = [
        {
            "loop": name,
            "img_s": round(statistics.median(values), 1),
            "min_max": f"{min(values):.1f}-{max(values):.1f}",
            "ratio": round(statistics.median(values) / plain, 3),
        }
        for name, values in speeds.items()
    ]
    title = f"{args.names[0]}: training img/s, {args.images} images, median of {rounds} rounds in turns"
    render_table(rows, fmt=args.format, title=title)
    print(f"hornet fit / plain loop: {rows[1]['ratio']:.3f}")
    return 0


def fit_benchmark(backbone: str, *, images: int, rounds: int, extra: list[str] = ()) -> dict[str, list[float]]:
    """Training images per second of `hornet fit` (the default config with ``backbone``, one epoch on ``images``
    training images, no validation) and of a plain PyTorch loop over the same model architecture, the same images,
    batch, lr, weight decay, label smoothing and clipping, in turns for ``rounds`` rounds. ``extra``: more `hornet fit`
    arguments, e.g. another data module."""
    import torch

    from hornet.analysis.measure.benchmark import plain_loop_img_per_s
    from hornet.callbacks import TrainThroughput
    from hornet.config import command_config
    from hornet.launch import build_run, execute
    from hornet.models import create_model, input_size_kwargs
    from hornet.quiet import quiet_lightning

    args = ["--model.backbone", backbone, "--data.init_args.limit_train", str(images), "--trainer.max_epochs", "1"]
    args += ["--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", *extra]
    speeds: dict[str, list[float]] = {"plain PyTorch loop": [], "hornet fit": []}
    with tempfile.TemporaryDirectory() as runs, quiet_lightning():
        config = command_config([*args, "--runs_dir", runs], "fit").config
        for index in range(rounds):
            run = build_run({**config, "run_name": f"round{index}"}, "fit")
            execute(run)
            throughput = next(c for c in run.trainer.callbacks if isinstance(c, TrainThroughput))
            speeds["hornet fit"].append(throughput.wall_img_s)
            data, hp = run.data, run.module.hparams
            loader = data.train_dataloader()  # the same images, gathered once into two tensors
            x, y = (torch.cat(parts) for parts in zip(*loader))
            sized = input_size_kwargs(backbone, data.img_size)
            model = create_model(backbone, num_classes=data.num_classes, in_chans=data.in_chans, **sized)
            speeds["plain PyTorch loop"].append(
                plain_loop_img_per_s(
                    model, x, y, batch_size=data.batch_size, lr=run.module.recipe.lr,
                    weight_decay=run.module.recipe.weight_decay, clip=run.trainer.gradient_clip_val,
                    label_smoothing=hp.label_smoothing, warmup=throughput.warmup,
                )
            )  # fmt: skip
    return speeds

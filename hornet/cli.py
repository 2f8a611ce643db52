"""The ``hornet`` command: one entry point, subcommands dispatched by name.

Each subcommand is a ``Subcommand`` row (name, help, argument builder, runner); fit / validate / test / predict go to
LightningCLI (hornet.training). Errors follow one contract (hornet.errors): bad input is one line and exit 2, a fault
while running one line and exit 1, SIGTERM / SIGINT exit 143 / 130; ``--debug`` or ``HORNET_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from rich.console import Console

from hornet.errors import EXIT_USAGE, UsageError, debug_requested, exit_status, interrupted_by, one_line

__all__ = ["SUBCOMMANDS", "main"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")  # LightningCLI.subcommands(), run by hornet.training


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def check_model_names(names: Sequence[str]) -> None:
    """Raise UsageError for a name timm does not know, suggesting close matches."""
    from hornet.models import check_model_name

    for name in names:
        try:
            check_model_name(name, key="model")
        except ValueError as err:
            raise UsageError(str(err).removeprefix("model: ")) from None


# --- hornet profile --------------------------------------------------------------------------------------------------
def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="timm model names (default: every registered hornet_* model)")
    parser.add_argument("--img-size", type=int, default=None, help="input size (default: each model's own)")
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    parser.add_argument(
        "--convention", choices=("torch", "fvcore"), default="torch", help="MAC counting convention (see README)"
    )
    parser.add_argument("--paper", action="store_true", help="the paper's Table 1 beside the measured values")
    parser.add_argument(
        "--matched", action="store_true", help="each FLOPs-matched gnConv arm beside its baseline and same-shape arm"
    )


def _run_profile(args: argparse.Namespace) -> int:
    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.complexity import profile_model
    from hornet.analysis.paper import PAPER_TABLE1
    from hornet.analysis.report import render_table

    if args.img_size is not None and args.img_size < 1:
        raise UsageError(f"--img-size must be a positive integer; got {args.img_size}")
    if args.matched:
        if args.names or args.paper:
            raise UsageError("--matched profiles the matched arms (hornet.models.matching); give no names or --paper")
        return _profile_matched(args)
    if args.paper:
        if args.names:
            raise UsageError("--paper profiles the paper's Table 1 models; give no model names with it")
        paper = {row.name: row for row in PAPER_TABLE1}
        names = list(paper)
    else:
        import timm

        names = args.names or timm.list_models("hornet_*")
        check_model_names(names)
    rows = []
    for name in names:
        measured = profile_model(name, img_size=args.img_size, convention=args.convention)
        row = {
            "model": name,
            "img_size": measured.img_size[0] if measured.img_size[0] == measured.img_size[1] else measured.img_size,
            "params_M": round(measured.params_m, 2),
            "GMACs": round(measured.gmacs, 4),
        }
        if args.paper:
            ref = paper[name]
            row["paper_params_M"] = ref.params_m if ref.params_m is not None else "-"
            row["paper_GFLOPs"] = ref.gflops
            row["diff_G"] = round(measured.gmacs - ref.gflops, 3)
            row["diff_%"] = round(100 * (measured.gmacs - ref.gflops) / ref.gflops, 2)
            row["paper_top1"] = ref.top1 if ref.top1 is not None else "-"
        rows.append(row)
    title = f"Params and MACs ({args.convention} convention, one image)"
    render_table(rows, fmt=args.format, title=title)
    return 0


def _profile_matched(args: argparse.Namespace) -> int:
    """Per matched arm: its baseline, the same-shape gnConv arm and the matched arm, MACs relative to the baseline."""
    from hornet.analysis.complexity import profile_model
    from hornet.analysis.report import render_table
    from hornet.models.matching import MATCHED

    rows = []
    for spec in MATCHED.values():
        size = args.img_size or spec.img_size
        baseline = profile_model(spec.baseline, img_size=size, convention=args.convention)
        for role, name in (("baseline", spec.baseline), ("same shape", spec.arm), ("matched", spec.name)):
            measured = (
                baseline if role == "baseline" else profile_model(name, img_size=size, convention=args.convention)
            )
            rows.append({
                "model": name, "role": role, "baseline": spec.baseline, "img_size": size,
                "params_M": round(measured.params_m, 3), "GMACs": round(measured.gmacs, 4),
                "MACs_vs_baseline_%": round(100 * (measured.macs / baseline.macs - 1), 1),
                "settings": str(spec.settings) if role == "matched" else "",
            })  # fmt: skip
    render_table(rows, fmt=args.format, title=f"FLOPs-matched gnConv arms ({args.convention} convention, one image)")
    return 0


# --- hornet bench ----------------------------------------------------------------------------------------------------
def _bench_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table")


def _run_bench(args: argparse.Namespace) -> int:
    import torch

    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.benchmark import BenchConfig, matmul_peak_gflops, run_benchmark
    from hornet.analysis.report import render_table

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


def _bench_fit(args: argparse.Namespace) -> int:
    """`hornet bench MODEL --mode fit`: the fit's training throughput as a share of a plain loop's."""
    import statistics

    from hornet.analysis.report import render_table
    from hornet.training import fit_benchmark

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


# --- hornet report ---------------------------------------------------------------------------------------------------
def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="suite directories or their results.csv")
    parser.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    parser.add_argument("--plots", metavar="DIR", default=None, help="write accuracy.png, pareto.png, curves.png")
    parser.add_argument(
        "--metric", default=None, help="results.csv column to compare (default: the suite's, e.g. test_top1, test_mIoU)"
    )
    parser.add_argument("--reference", default=None, help="variant to compare to (default: the suite's reference)")
    parser.add_argument(
        "--select", default=None, help="column to choose the best variant on (default: best_val_<metric>, validation)"
    )
    parser.add_argument(
        "--detect",
        type=float,
        default=1.0,
        help="a difference in points whose seeds-needed the power line states (1.0)",
    )


def _run_report(args: argparse.Namespace) -> int:
    from hornet.analysis.report import render_table
    from hornet.analysis.results import load_suite, power_line, problem_rows, selection_line, summary_rows

    if args.detect <= 0:
        raise UsageError(f"--detect must be a positive number of points; got {args.detect}")
    suites = [load_suite(path, reference=args.reference, metric=args.metric) for path in args.paths]
    several = len(suites) > 1
    rows = [row for suite in suites for row in summary_rows(suite, label_suite=several)]
    title = " | ".join(f"{s.name} ({s.path}), reference {s.reference}" for s in suites)
    render_table(rows, fmt=args.format, title=title + "; delta: paired over seeds, 95% t interval, * excludes 0")
    for suite in suites:  # stdout beside a table, stderr beside CSV (which stays machine-readable)
        text = sys.stderr if args.format == "csv" else sys.stdout
        print(power_line(suite, args.detect / 100), file=text)
        line, on_test = selection_line(suite, args.select)
        print(line, file=text)
        if suite.note:
            print(f"{suite.name}: {suite.note}", file=text)
        if on_test:
            print(
                f"hornet report: warning: {suite.name} is selected on a test column ({args.select}); the chosen "
                "variant's test score is then an over-estimate: select on a best_val_* column",
                file=sys.stderr,
            )
    problems = [row for suite in suites for row in problem_rows(suite)]
    if problems:
        render_table(problems, fmt=args.format, title="runs not averaged in (failed or interrupted)")
    if args.plots:
        from hornet.analysis.analyze import suite_figures
        from hornet.analysis.plots import save_plots

        written = save_plots(suites, args.plots)
        for suite in suites:  # J(m) curves and ERF maps of suites that `hornet analyze suite` has analysed
            written += suite_figures(suite, Path(args.plots) / suite.name if several else args.plots)
        for path in written:
            Console(stderr=True).print(f"wrote {path}", highlight=False)
    return 0


# --- hornet analyze --------------------------------------------------------------------------------------------------
def _analyze_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    interactions = kinds.add_parser("interactions", help="strength of interactions by order, J(m) (docs/analysis.md)")
    erf = kinds.add_parser("erf", help="effective receptive field of every stage (docs/analysis.md)")
    suite = kinds.add_parser("suite", help="both analyses on every finished run of a suite, resumably")
    suite.add_argument("suite_dir", metavar="SUITE_DIR", help="a suite directory (with results.csv)")
    suite.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    for name, default in (("images", 10), ("grid", 7), ("pairs", 20), ("contexts", 16)):
        suite.add_argument(f"--{name}", type=int, default=default, help=f"as `hornet analyze interactions` ({default})")
    suite.add_argument("--erf-images", type=int, default=32, help="as `hornet analyze erf --images` (32)")
    for sub in (interactions, erf):
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="DIR", help="a `hornet fit` run directory (its config, best checkpoint)")
        source.add_argument("--ckpt", metavar="PATH", help="a `hornet fit` checkpoint (data: the default config's)")
        source.add_argument("--model", metavar="NAME", help="an untrained timm model (data: the default config's)")
        sub.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
        sub.add_argument("--output", metavar="DIR", default=None, help="where to write (default: RUN/analysis)")
    interactions.add_argument("--images", type=int, default=10, help="correctly classified test images (10)")
    interactions.add_argument("--grid", type=int, default=7, help="G: players are the cells of a G x G grid (7)")
    interactions.add_argument("--pairs", type=int, default=20, help="neighbour pairs per image (20)")
    interactions.add_argument("--contexts", type=int, default=16, help="sampled contexts per pair and order (16)")
    interactions.add_argument(
        "--orders",
        type=float,
        nargs="+",
        default=None,
        help="ratios r of m = int((n-2) r) (default: the 13 of the paper)",
    )
    interactions.add_argument("--batch-size", type=int, default=512, help="masked images per forward pass (512)")
    interactions.add_argument("--seed", type=int, default=0, help="seed of images, pairs and contexts (0)")
    erf.add_argument("--images", type=int, default=32, help="test images averaged (32)")
    erf.add_argument("--sizes", type=int, nargs="+", default=None, help="input sizes (default: the data's and 2x)")
    erf.add_argument("--batch-size", type=int, default=16, help="images per backward pass (16)")


def _run_analyze(args: argparse.Namespace) -> int:
    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.analyze import analyze_erf, analyze_interactions
    from hornet.analysis.interactions import RATIOS
    from hornet.analysis.trained import load_trained

    if args.analysis == "suite":
        from hornet.analysis.analyze import analyze_suite

        settings = {key: getattr(args, key) for key in ("images", "grid", "pairs", "contexts")}
        paths = analyze_suite(
            args.suite_dir, interactions=settings, erf={"images": args.erf_images}, device=args.device
        )
        for path in paths.values():
            Console(stderr=True).print(f"wrote {path}", highlight=False)
        return 0
    trained = load_trained(run=args.run, ckpt=args.ckpt, model=args.model)
    default = Path(args.run) / "analysis" if args.run else Path("analysis") / (args.model or Path(args.ckpt).stem)
    output = Path(args.output) if args.output else default
    if args.analysis == "interactions":
        paths = analyze_interactions(
            trained, output, images=args.images, grid=args.grid, pairs=args.pairs, contexts=args.contexts,
            ratios=args.orders or RATIOS, batch_size=args.batch_size, seed=args.seed, device=args.device,
        )  # fmt: skip
    else:
        paths = analyze_erf(
            trained, output, images=args.images, sizes=args.sizes, batch_size=args.batch_size, device=args.device
        )
    for path in paths.values():
        Console(stderr=True).print(f"wrote {path}", highlight=False)
    return 0


# --- hornet publish --------------------------------------------------------------------------------------------------
def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite_dirs", nargs="+", metavar="SUITE_DIR", help="suite directories (runs/<suite>)")
    parser.add_argument(
        "--to", metavar="DIR", default="results", help="the results folder; each suite goes to DIR/<its folder name>"
    )


def _run_publish(args: argparse.Namespace) -> int:
    from hornet.ablation.publish import publish_suite

    for suite_dir in args.suite_dirs:
        print(publish_suite(suite_dir, Path(args.to) / Path(suite_dir).resolve().name).line())
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in (
        Subcommand(
            "profile", "params and MACs of timm models; --paper compares with Table 1", _profile_arguments, _run_profile
        ),
        Subcommand("bench", "race models: img/s, peak memory, MACs, utilisation", _bench_arguments, _run_bench),
        Subcommand("report", "suite results: table, paired differences, plots", _report_arguments, _run_report),
        Subcommand("analyze", "interaction orders and effective receptive fields", _analyze_arguments, _run_analyze),
        Subcommand(
            "publish", "copy suites' small result files (no checkpoints) to results/", _publish_arguments, _run_publish
        ),
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hornet", description="HorNet / gnConv research toolkit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also HORNET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_SUBCOMMANDS:  # listed for --help; handled by LightningCLI (`hornet fit --help`)
        sub.add_parser(name, help=f"LightningCLI {name} (see `hornet {name} --help`)", add_help=False)
    for command in SUBCOMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    parser = build_parser()
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:  # LightningCLI parses these itself
            from hornet.training import run_lightning

            if debug:
                os.environ["HORNET_DEBUG"] = "1"  # also for the ranks a distributed fit starts
            return run_lightning([a for a in argv if a != "--debug"])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return SUBCOMMANDS[args.command].run(args)
    except BaseException as err:
        if stop := interrupted_by(err):  # the signal's own exception, or an error that replaced it
            Console(stderr=True).print(f"[bold red]hornet: interrupted ({stop})[/]", highlight=False)
            return 128 + stop.signum
        if not isinstance(err, Exception):  # SystemExit, a KeyboardInterrupt outside a fit
            raise
        status = exit_status(err)
        if debug or status is None:
            raise
        Console(stderr=True).print(f"[bold red]hornet: error:[/] {one_line(err)}", highlight=False, soft_wrap=True)
        return status


if __name__ == "__main__":
    sys.exit(main())

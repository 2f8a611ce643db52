"""`hornet profile`: params and MACs of timm models; the paper's Table 1 beside them (--paper); the FLOPs-matched
gnConv arms beside their baselines (--matched)."""

from __future__ import annotations

import argparse

from hornet.commands.common import check_model_names
from hornet.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    import hornet  # noqa: F401  (registers the models)
    from hornet.analysis.measure.complexity import profile_model
    from hornet.analysis.stats.paper import PAPER_TABLE1
    from hornet.analysis.stats.report import render_table

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
    from hornet.analysis.measure.complexity import profile_model
    from hornet.analysis.stats.report import render_table
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

"""`hornet report`: a suite's table, paired differences, power and selection lines, plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from hornet.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from hornet.analysis.stats.report import render_table
    from hornet.analysis.stats.results import (
        label_suites,
        load_suite,
        power_line,
        problem_rows,
        selection_line,
        summary_rows,
    )

    if args.detect <= 0:
        raise UsageError(f"--detect must be a positive number of points; got {args.detect}")
    suites = label_suites([load_suite(path, reference=args.reference, metric=args.metric) for path in args.paths])
    several = len(suites) > 1
    rows = [row for suite in suites for row in summary_rows(suite, label_suite=several)]
    title = " | ".join(f"{s.label} ({s.path}), reference {s.reference}" for s in suites)
    render_table(rows, fmt=args.format, title=title + "; delta: paired over seeds, 95% t interval, * excludes 0")
    for suite in suites:  # stdout beside a table, stderr beside CSV (which stays machine-readable)
        text = sys.stderr if args.format == "csv" else sys.stdout
        for line in suite.notes:  # first: what the table can say depends on its scale
            print(f"{suite.label}: {line}", file=text)
        print(power_line(suite, args.detect / 100), file=text)
        line, on_test = selection_line(suite, args.select)
        print(line, file=text)
        if on_test:
            print(
                f"hornet report: warning: {suite.label} is selected on a test column ({args.select}); the chosen "
                "variant's test score is then an over-estimate: select on a best_val_* column",
                file=sys.stderr,
            )
    problems = [row for suite in suites for row in problem_rows(suite)]
    if problems:
        render_table(problems, fmt=args.format, title="runs not averaged in (failed or interrupted)")
    if args.plots:
        from hornet.analysis.probe.analyze import suite_figures
        from hornet.analysis.stats.plots import save_plots

        written = save_plots(suites, args.plots)
        for suite in suites:  # J(m) curves and ERF maps of suites that `hornet analyze suite` has analysed
            written += suite_figures(suite, Path(args.plots) / suite.label if several else args.plots)
        for path in written:
            Console(stderr=True).print(f"wrote {path}", highlight=False)
    return 0

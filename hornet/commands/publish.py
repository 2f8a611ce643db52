"""`hornet publish`: a suite's small result files (no checkpoints) copied into results/."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite_dirs", nargs="+", metavar="SUITE_DIR", help="suite directories (runs/<suite>)")
    parser.add_argument(
        "--to", metavar="DIR", default="results", help="the results folder; each suite goes to DIR/<its folder name>"
    )
    parser.add_argument(
        "--replace", action="store_true", help="replace a target folder that holds runs of another configuration, whole"
    )


def run(args: argparse.Namespace) -> int:
    from hornet.ablation.publish import publish_suite

    for suite_dir in args.suite_dirs:
        target = Path(args.to) / Path(suite_dir).resolve().name
        print(publish_suite(suite_dir, target, replace=args.replace).line())
    return 0

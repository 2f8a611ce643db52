"""The ``hornet`` command: one entry point, subcommands dispatched by name.

Each subcommand is a ``Subcommand`` row (name, help, its module in hornet.commands); fit / validate / test / predict
build a run (or a suite) from a config (hornet.commands.run). This module only dispatches. Errors follow one
contract (hornet.errors): bad input is one line and exit 2, a fault while running one line and exit 1, SIGTERM /
SIGINT exit 143 / 130; ``--debug`` or ``HORNET_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from hornet.errors import EXIT_USAGE, debug_requested, exit_status, interrupted_by, one_line

__all__ = ["RUN_SUBCOMMANDS", "SUBCOMMANDS", "main"]

RUN_SUBCOMMANDS = ("fit", "validate", "test", "predict")  # Lightning's stages: hornet.commands.run


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    module: str  # hornet.commands.<module>: add_arguments(parser) and run(args)

    def load(self):
        return importlib.import_module(f"hornet.commands.{self.module}")


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in (
        Subcommand("profile", "params and MACs of timm models; --paper compares with Table 1", "profile"),
        Subcommand("bench", "race models: img/s, peak memory, MACs, utilisation", "bench"),
        Subcommand("report", "suite results: table, paired differences, plots", "report"),
        Subcommand("analyze", "interaction orders and effective receptive fields", "analyze"),
        Subcommand("publish", "copy suites' small result files (no checkpoints) to results/", "publish"),
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hornet", description="HorNet / gnConv research toolkit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also HORNET_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in RUN_SUBCOMMANDS:  # listed for --help; their own parser is the config's (`hornet fit --help`)
        sub.add_parser(name, help=f"{name} a run from a config (see `hornet {name} --help`)", add_help=False)
    for command in SUBCOMMANDS.values():
        command.load().add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    parser = build_parser()
    try:
        if argv and argv[0] in RUN_SUBCOMMANDS:  # the config's own parser reads the rest
            from hornet.commands.run import run_command

            if debug:
                os.environ["HORNET_DEBUG"] = "1"  # also for the ranks a distributed fit starts
            return run_command(argv[0], [a for a in argv[1:] if a != "--debug"])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return SUBCOMMANDS[args.command].load().run(args)
    except BaseException as err:
        if stop := interrupted_by(err):  # the signal's own exception, or an error that replaced it
            Console(stderr=True).print(f"[bold red]hornet: interrupted ({stop})[/]", highlight=False)
            return 128 + stop.signum
        if not isinstance(err, Exception):  # SystemExit, a KeyboardInterrupt outside a fit
            raise
        status = exit_status(err)
        if debug or status is None:
            raise
        Console(stderr=True).print(
            f"[bold red]hornet: error:[/] {escape(one_line(err))}", highlight=False, soft_wrap=True
        )
        return status


if __name__ == "__main__":
    sys.exit(main())

"""The ``edgemoe`` command line: one parser, each subcommand from its own module.

Every error caused by bad input is one line on stderr and exit code 2; a
failed verification (budgets missed) exits 1.
"""

from __future__ import annotations

import argparse
import sys

from edgemoe.errors import EdgeMoeError
from edgemoe.host.app import bench, estimate, evaluate, export, run, train, verify
from edgemoe.host.app.args import HelpFormatter, Parser

#: The subcommands in ``--help`` order.
COMMANDS = (verify, export, run, estimate, bench, train, evaluate)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="edgemoe",
        description="M3ViT on the Edge-MoE FPGA accelerator: export, run, verify.",
        formatter_class=HelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else 0
    try:
        return args.func(args)
    except EdgeMoeError as e:
        print(f"edgemoe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgemoe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

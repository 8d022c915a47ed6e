"""The ``idfree-audit`` command line: one subcommand per user journey, each with ``--json``.

The CLI is thin: each subcommand lives in ``reports/commands/<name>.py`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside ``run`` so that
``--help`` stays fast.  Bad input raises :class:`idfree_core.errors.InputError` (or ``ValueError``
/ ``OSError``) and is printed here as one line with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
from types import ModuleType

COMMANDS = ("simulate", "identifiability", "misattribution", "attack", "sweep", "report")
EXIT_BAD_INPUT = 2


def _load_commands() -> dict[str, ModuleType]:
    modules = {}
    for name in COMMANDS:
        qualified = f"reports.commands.{name}"
        try:
            modules[name] = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:  # a command not built yet; tests/test_cli.py requires all
            if exc.name != qualified:
                raise
    return modules


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are the CLI's one error line (no usage block):
    ``idfree-audit CMD: error: ...`` and exit code 2, like every other bad input."""

    def _get_values(self, action, arg_strings):
        # CPython 3.11 drops a value "--" (``--users=--``) and hands the command an empty list
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one value, got '--'")
        return super()._get_values(action, arg_strings)

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(str(message).split())} "
                                  f"(see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("idfree-audit")
    except PackageNotFoundError:  # running from a source tree without installation
        ver = "unknown"
    parser = OneLineParser(
        prog="idfree-audit",
        description="Audit the privacy of identifier-free personalized learning (IDfree-PL).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = _load_commands()
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    return parser, modules


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line already printed), --help or --version
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print(f"idfree-audit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RecursionError, OverflowError, sqlite3.DatabaseError) as exc:  # InputError is a ValueError
        if args.debug:
            raise
        print(f"idfree-audit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

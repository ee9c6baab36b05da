"""``python -m advisor`` / ``gpu-advisor``: parse, call the library, print text or ``--json``.

Each command lives in ``advisor/commands/<name>.py`` with ``add_parser(subparsers)``, which
registers the sub-command and sets ``func`` to its ``run(args) -> int``.  ``AdvisorError``
becomes ``error: ...`` / ``hint: ...`` on stderr and a non-zero exit here, in one place;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from advisor import __version__
from advisor.errors import AdvisorError

#: Sub-commands, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("specs", "probe", "estimate", "recommend", "validate", "history")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the CLI's error format: ``error: ...`` and ``hint: ...`` on stderr, exit 2.

    argparse's default prints the whole usage block (5-6 lines) before the message; here the message
    comes first and the hint names the command's ``--help``.  Sub-parsers inherit this class.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``error:`` + ``hint:`` and exit 2 (argparse's own exit code for bad arguments)."""
        hint = f"`{self.prog} --help` lists the options"
        if self.prog == "gpu-advisor" and "invalid choice" in message:
            hint = f"commands: {', '.join(COMMANDS)}"
        elif self.prog == "gpu-advisor" and message.startswith("unrecognized arguments"):
            hint = "`gpu-advisor COMMAND --help` lists a command's options"
        print(f"error: {message}", file=sys.stderr)
        print(f"hint: {hint}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The top-level parser with ``commands`` (default: every sub-command) registered."""
    parser = ArgumentParser(
        prog="gpu-advisor",
        description="GPU hardware advisor: what is in this machine, how fast it really is, "
        "whether a model fits, how long it takes, and which card to buy or rent.",
    )
    parser.add_argument("--version", action="version", version=f"gpu-advisor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        module = importlib.import_module(f"advisor.commands.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 could not do what was asked, 2 bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # only the command asked for is registered: registering them all imports every command's module (the probe's
    # kernels, validate's models: ~0.3 s of a cold `estimate`); anything else (--help, a typo) gets them all
    parser = build_parser((argv[0],) if argv and argv[0] in COMMANDS else COMMANDS)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except AdvisorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130

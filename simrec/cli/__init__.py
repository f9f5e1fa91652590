"""The ``simrec`` command: one module per command, each with ``register(sub)`` that adds its
parser and sets ``func``, the function ``main`` dispatches to.

User errors (bad data, bad config, an occupied output directory) print one message and exit
with status 2, without a traceback. ``-v`` shows simrec's decisions as they happen (LLM
fallbacks, policy refits, resume points); ``-vv`` also the debugging detail.
"""

from __future__ import annotations

import argparse
import logging
import sys

from simrec.cli import (
    ab,
    augment,
    cache,
    converse,
    datasets,
    export,
    fidelity,
    ope,
    report,
    run,
)
from simrec.cli.flags import apply_cache_flags, build_config, infer_format
from simrec.errors import SimrecError
from simrec.version import __version__

__all__ = ["build_config", "infer_format", "main", "parser"]

_COMMANDS = (run, ab, ope, converse, export, augment, fidelity, report, datasets, cache)


def parser() -> argparse.ArgumentParser:
    """The ``simrec`` argument parser, every command registered."""
    p = argparse.ArgumentParser(
        prog="simrec", description="Simulated users for recommender systems."
    )
    p.add_argument("--version", action="version", version=f"simrec {__version__}")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log simrec's decisions to stderr (fallbacks, retries, refits, resume points); "
        "-vv for debugging detail",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from simrec import outputs

    args = parser().parse_args(argv)
    _configure_logging(args.verbose)
    outputs.COMMAND = f"simrec {args.command}"  # what a lock names: never the flags
    apply_cache_flags(args)
    try:
        return args.func(args)
    except SimrecError as err:
        print(f"simrec: error: {_short_lines(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "simrec: interrupted; what was written is kept (resume with --resume DIR)",
            file=sys.stderr,
        )
        return 130


def _short_lines(text: str, limit: int = 1000) -> str:
    """An error message with each line cut to ``limit`` characters: a value from a file (a
    50 MB config value, a 2 MB label) is never echoed whole."""
    return "\n".join(
        line if len(line) <= limit else f"{line[:limit]}... ({len(line):,} characters)"
        for line in text.splitlines()
    )


def _configure_logging(verbose: int) -> None:
    """simrec's loggers to stderr at INFO (-v) or DEBUG (-vv); warnings only otherwise."""
    log = logging.getLogger("simrec")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    log.setLevel(level)
    if not any(getattr(h, "_simrec", False) for h in log.handlers):  # warnings always show
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("simrec: %(levelname)s: %(name)s: %(message)s"))
        handler._simrec = True  # type: ignore[attr-defined]
        log.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler that always writes to the current ``sys.stderr`` (which tests and
    notebooks replace), not to the one it was made with."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

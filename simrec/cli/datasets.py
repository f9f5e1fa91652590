"""simrec datasets: the named datasets and whether they are installed."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    d = sub.add_parser(
        "datasets",
        help="list the named datasets (--data NAME) and whether they are installed",
        description="The named datasets --data accepts, where each comes from, and whether it "
        "is installed (else the line that installs it).",
    )
    d.set_defaults(func=cmd_datasets)


def cmd_datasets(args: argparse.Namespace) -> int:
    from simrec.datasets import listing

    for row in listing():
        print(f"{row['name']}  (--data {row['name']}, format {row['format']})")
        print(f"  {row['description']}")
        print(f"  source: {row['source']}")
        where = "path" if row["installed"] == "yes" else "install with"
        print(f"  installed: {row['installed']}; {where}: {row['path_or_install']}")
    print("synthetic  (--format synthetic): the built-in synthetic world, always available")
    return 0

"""simrec cache info|clear: the calibration cache (:mod:`simrec.cache`)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the command to the ``simrec`` parser's subcommands ``sub``."""
    c = sub.add_parser(
        "cache",
        help="show or clear the calibration cache",
        description="Calibrations (the fitted population of a log, its settings and seed) are "
        "cached so that later commands on the same data skip them. info lists the entries; "
        "clear removes them.",
    )
    c.add_argument("action", choices=("info", "clear"))
    c.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the cache folder (default: $SIMREC_CACHE_DIR, else ~/.cache/simrec)",
    )
    c.set_defaults(func=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    from simrec import cache

    root = cache.folder()
    if root is None:
        print("the calibration cache is off (SIMREC_NO_CACHE)")
        return 0
    if args.action == "clear":
        n, size = cache.clear()
        print(f"{root}: removed {n} calibration(s), {_size(size)}")
        return 0
    rows = cache.entries()
    total = sum(r["bytes"] for r in rows)
    print(f"{root}: {len(rows)} calibration(s), {_size(total)}")
    for r in rows:
        what = (
            f"{r.get('source')}, {r.get('users')} users, {r.get('items')} items, "
            f"{r.get('interactions')} interactions, seed {r.get('seed')}"
            if "problem" not in r
            else r["problem"]
        )
        print(
            f"  {r['key'][:12]}  {r.get('created')}  simrec {r.get('simrec_version')}: {what}; "
            f"{_size(r['bytes'])}"
        )
    return 0


def _size(n: int) -> str:
    """Bytes in words.

    >>> _size(7_359_744)
    '7.4 MB'
    """
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"

"""Named datasets: real data that an installed package ships, found without importing it.

``--data ml-100k`` (or ``recbole:ml-100k``) names MovieLens-100k as RecBole's wheel ships it
(atomic files with timestamps, titles, years, genres, user features and a Freebase knowledge
graph). The package is installed without its dependencies and never imported: the folder is
found through ``importlib.metadata``.

>>> [d.name for d in NAMED.values()]
['ml-100k']
>>> resolve_name("recbole:ml-100k").name
'ml-100k'
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from simrec.errors import InputError


@dataclass(frozen=True)
class NamedDataset:
    """A dataset shipped inside a Python distribution: ``folder`` is its path inside it."""

    name: str
    format: str
    distribution: str
    folder: str
    install: str
    description: str

    def path(self) -> Path | None:
        """Where the dataset is installed, or None when its distribution is not."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        p = Path(str(dist.locate_file(self.folder)))
        return p if p.is_dir() else None

    def require(self) -> Path:
        """The installed folder, or InputError with the one line that installs it."""
        p = self.path()
        if p is None:
            raise InputError(
                f"dataset '{self.name}' is not installed (it ships in the "
                f"'{self.distribution}' wheel); install it with: {self.install}"
            )
        return p


NAMED = {
    "ml-100k": NamedDataset(
        name="ml-100k",
        format="recbole",
        distribution="recbole",
        folder="recbole/dataset_example/ml-100k",
        install="pip install --no-deps recbole==1.2.1",
        description="MovieLens-100k: 943 users, 1,682 movies, 100,000 ratings with timestamps, "
        "genres, years, user features, Freebase knowledge graph (.kg, .link; its links use "
        "MovieLens-1M ids, so its facts describe other movies)",
    ),
}


def resolve_name(text: str) -> NamedDataset | None:
    """The named dataset ``text`` refers to (``ml-100k`` or ``recbole:ml-100k``), else None."""
    key = text.removeprefix("recbole:") if text.startswith("recbole:") else text
    return NAMED.get(key)


def resolve_path(text: str) -> Path:
    """A data path: ``recbole:NAME`` always means the named dataset; a bare NAME does when no
    file or folder of that name exists here (an existing path wins)."""
    named = resolve_name(text)
    if named is not None and (text.startswith("recbole:") or not Path(text).exists()):
        return named.require()
    if text.startswith("recbole:"):
        raise InputError(
            f"--data {text}: unknown named dataset; known: "
            f"{', '.join('recbole:' + n for n in NAMED)}"
        )
    return Path(text)


def listing() -> list[dict[str, str]]:
    """One row per named dataset: name, format, source, installed, path or install line."""
    rows = []
    for d in NAMED.values():
        p = d.path()
        rows.append(
            {
                "name": d.name,
                "format": d.format,
                "source": f"{d.distribution} wheel: {d.folder}",
                "installed": "yes" if p else "no",
                "path_or_install": str(p) if p else d.install,
                "description": d.description,
            }
        )
    return rows


def infer_format(path: str) -> str:
    """The format of the data at ``path``: a named dataset or RecBole atomic files (recbole),
    another single file (table), or a MovieLens folder told by its ratings file."""
    p = Path(path)
    named = resolve_name(path)
    if path.startswith("recbole:") or (named is not None and not p.exists()):
        return "recbole"  # the loader resolves the name, or says which names it knows
    if p.is_file():
        return "recbole" if p.suffix == ".inter" else "table"
    if p.is_dir() and any(p.glob("*.inter")):
        return "recbole"
    for marker, fmt in (
        ("u.data", "movielens-100k"),
        ("ratings.dat", "movielens-1m"),
        ("ratings.csv", "movielens-latest"),
    ):
        if (p / marker).is_file():
            return fmt
    if not p.exists():
        raise InputError(f"{p}: data path not found")
    raise InputError(
        f"{p}: cannot tell the data format (no u.data, ratings.dat, ratings.csv or *.inter); "
        "pass --format"
    )

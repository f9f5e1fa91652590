"""MkDocs hook: the reference pages are generated from the code, so they cannot drift.

``<!-- simrec:cli -->`` becomes every command's ``--help`` (from the argparse parser the CLI
uses), ``<!-- simrec:config -->`` every config field with its type, default and description
(from the pydantic models), ``<!-- simrec:schema -->`` every output table's columns (from the
Arrow schemas that the writers use).
"""

from __future__ import annotations

import argparse
import os
import typing

import pyarrow as pa
from pydantic import BaseModel


def _cli() -> str:
    from simrec.cli import parser as cli_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
    out: list[str] = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        out.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(p, f"{name} {sub}")

    walk(cli_parser(), "simrec")
    return "\n".join(out)


def _config() -> str:
    from simrec.config import RunConfig

    out: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, nested = [], []
        for name, field in model.model_fields.items():
            ann = field.annotation
            sub = next(
                (
                    t
                    for t in (ann, *getattr(ann, "__args__", ()))
                    if isinstance(t, type) and issubclass(t, BaseModel)
                ),
                None,
            )
            if sub is not None:
                nested.append((f"{prefix}{name}", sub))
                continue
            default = (
                "required"
                if field.is_required()
                else repr(field.get_default(call_default_factory=True))
            )
            kind = _type_name(ann)
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{name}` | `{kind}` | `{default}` | {desc} |")
        if rows:
            doc = " ".join((model.__doc__ or "").split())
            out.append(f"## `{prefix.rstrip('.') or 'top level'}`\n\n{doc}\n")
            out.append("| field | type | default | meaning |\n|---|---|---|---|")
            out.extend(rows)
            out.append("")
        for name, sub in nested:
            walk(sub, f"{name}.")

    walk(RunConfig, "")
    return "\n".join(out)


def _type_name(ann) -> str:
    if typing.get_origin(ann) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(ann))
    text = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
    return text.replace(" | ", " or ")


def _schema() -> str:
    from simrec.data.schemas import schema_document

    out = []
    for table, columns in schema_document(pa.int64(), pa.int64()).items():
        out.append(f"### `{table}`\n\n| column | Arrow type | nullable |\n|---|---|---|")
        out += [f"| `{c['name']}` | `{c['type']}` | {c['nullable']} |" for c in columns]
        out.append("")
    out.append(
        "Item and source-user ids are `int64` when the data's ids are integers, else `string`."
    )
    return "\n".join(out)


_MARKERS = {
    "<!-- simrec:cli -->": _cli,
    "<!-- simrec:config -->": _config,
    "<!-- simrec:schema -->": _schema,
}


def on_page_markdown(markdown: str, **_) -> str:
    for marker, make in _MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown

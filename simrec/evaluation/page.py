"""The building blocks of simrec's HTML reports (runs, A/B tests, OPE, fidelity).

A report is a folder: ``report.html`` plus the PNG files it shows, with no external scripts,
styles or fonts, so it can be opened or archived as it is. Every file is written atomically.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from simrec import outputs

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> str:
    """Write ``fig`` as a PNG at ``path`` (atomically) and close it; returns the file name."""
    fig.tight_layout()
    try:
        with outputs.replacing(path, ".tmp.png") as f:
            fig.savefig(f, dpi=110, bbox_inches="tight", format="png")
    finally:
        pyplot().close(fig)
    return path.name


def esc(value: object) -> str:
    """Any value as HTML text, escaped (quotes included): the one way a value read from a file
    (a manifest, a Parquet column, a config) reaches a report.

    >>> esc("<script>alert('x')</script>")
    '&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;'
    >>> esc(3)
    '3'
    """
    return html.escape(str(value), quote=True)


def write_page(out: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """``out/report.html``: the title, then each (heading, HTML content) section in order."""
    body = "\n".join(f"<h2>{esc(h)}</h2>\n{content}" for h, content in sections)
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n{body}\n"
        f"</body></html>\n"
    )
    path = out / "report.html"
    outputs.atomic_write(path, text.encode("utf-8"))
    return path


def image(name: str, alt: str) -> str:
    """An ``<img>`` of the PNG ``name`` beside the page.

    >>> image("a.png", "plot")
    "<p><img src='a.png' alt='plot'></p>"
    """
    return f"<p><img src='{esc(name)}' alt='{esc(alt)}'></p>"


def table(df: pd.DataFrame) -> str:
    """``df`` as an HTML table (no index, 4 significant digits, empty cells for NaN); every
    cell and header escaped."""
    return df.to_html(
        index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="", escape=True
    )

"""The synthetic-data report's page: the verdict first, then utility, ranking, log fidelity,
privacy and the setup."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from simrec.config import RunConfig
from simrec.evaluation import page as blocks


def section_table(table: pd.DataFrame, section: str) -> pd.DataFrame:
    """One section of the long table, its sources side by side."""
    part = table[table.section == section]
    wide = part.set_index(["setting", "metric", "source"]).value.unstack("source")
    order = part.drop_duplicates(["setting", "metric"]).set_index(["setting", "metric"]).index
    return wide.reindex(order).reset_index()


def write_report(out: Path, table: pd.DataFrame, cfg: RunConfig) -> None:
    """``report.html`` under ``out`` (``synthetic.parquet`` is written by the caller)."""
    from simrec.evaluation.synthetic import verdict

    setup = table[table.section == "setup"]
    policy = setup[setup.metric == "policy"].source
    sections = [
        (
            "Is the synthetic log good training data?",
            "<ul>" + "".join(f"<li>{blocks.esc(v)}.</li>" for v in verdict(table)) + "</ul>",
        ),
        (
            "Train on synthetic, test on real",
            "<p>Recall@20 and NDCG@20 on the real held-out items of models trained on each log "
            "(intervals: 95% percentile bootstrap over users).</p>"
            + blocks.table(section_table(table, "utility")),
        ),
        ("Do models rank the same?", blocks.table(section_table(table, "ranking"))),
        ("The log itself", blocks.table(section_table(table, "log"))),
        ("Privacy", blocks.table(section_table(table, "privacy"))),
        (
            "Setup",
            f"<p>The synthetic users met slates of <code>{blocks.esc(policy.iloc[0])}"
            f"</code>.</p><pre>"
            + blocks.esc(json.dumps(cfg.model_dump(mode="json"), indent=1))
            + "</pre>",
        ),
    ]
    blocks.write_page(out, "simrec synthetic-data report", sections)

"""The report of ``simrec converse`` output (``simrec report DIR``), beside its command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from simrec import outputs
from simrec.conversation.run import found_target
from simrec.evaluation import page


def conversation_report(conv_dir: Path, out: str | Path | None = None) -> Path:
    """``DIR/report/report.html`` for ``simrec converse`` output: the comparison of the arms,
    success and Recall@10 by turn per arm, and example dialogues of each arm (the first
    success and the first failure)."""
    manifest = outputs.read_json(conv_dir / "manifest.json", "a conversation run's manifest")
    out = Path(out) if out else conv_dir / "report"
    with outputs.owning(out, "report", overwrite=False, what="report"):
        plt = page.pyplot()
        metrics = pq.read_table(conv_dir / "crs_metrics.parquet").to_pandas()
        comparison = pq.read_table(conv_dir / "crs_comparison.parquet").to_pandas()
        conv = pq.read_table(conv_dir / "conversations.parquet").to_pandas()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for arm, m in metrics.groupby("arm", sort=False, observed=True):
            axes[0].plot(m.turn, m.success_rate, marker=".", label=str(arm))
            axes[1].plot(m.turn, m.recall_at_10, marker=".", label=str(arm))
        for ax, what in zip(axes, ("success rate", "Recall@10"), strict=True):
            ax.set_xlabel("turn")
            ax.set_ylabel(what)
            ax.set_ylim(0, 1)
            ax.set_xticks(sorted(metrics.turn.unique()))
        axes[0].legend()
        curves = page.save_figure(fig, out / "by_turn.png")
        arms = ", ".join(f"{k} ({v['spec']})" for k, v in manifest["arms"].items())
        sections = [
            (
                "Conversations",
                f"<p>{page.esc(manifest['users'])} users ({page.esc(manifest['user_brain'])} "
                f"brain, {page.esc(manifest['targets'])} targets, what they knew: interactions "
                f"{page.esc(manifest['cutoff'])}) talked to each of {page.esc(arms)} "
                f"for at most {page.esc(manifest['turns'])} turns; control: "
                f"{page.esc(manifest['control'])}.</p>" + page.table(comparison),
            ),
            ("Success and Recall@10 by turn", page.image(curves, "success and recall by turn")),
        ]
        for arm, d in conv.groupby("arm", sort=False, observed=True):
            said = {"user": "User", "crs": "CRS", "rating": "Rating"}
            last = d[d.speaker == "user"].groupby("conversation").last()
            ends = pd.Series(
                [
                    found_target(t, list(ids), list(vs))
                    for t, ids, vs in zip(
                        last.target_item_id, last.item_ids, last.verdicts, strict=True
                    )
                ],
                index=last.index,
            )
            for label, pick in (("a success", ends[ends]), ("a failure", ends[~ends])):
                if pick.empty:
                    continue
                rows = d[d.conversation == pick.index[0]]
                lines = "".join(
                    f"<p><b>{page.esc(said.get(r.speaker, r.speaker))}</b>: {page.esc(r.text)}"
                    f"{page.esc(f' ({r.rating}/10)') if r.speaker == 'rating' else ''}</p>"
                    for r in rows.itertuples()
                )
                sections.append((f"{arm}: {label}", lines))
        sections.append(("Metrics by turn", page.table(metrics)))
        return page.write_page(out, f"simrec converse {conv_dir.name}", sections)

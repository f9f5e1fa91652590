"""Exports of a complete run: RecBole atomic files, an OBP-style bandit bundle, a Hugging Face
dataset layout with a card, and CSV.

Every export is written to a hidden temporary directory and renamed into place, so a failed
export leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simrec import outputs
from simrec.errors import InputError, OutputExistsError

FORMATS = ("recbole", "obp", "hf", "csv", "hf-chat")


def export(
    run_dir: str | Path,
    to: str,
    *,
    out: str | Path | None = None,
    test_fraction: float = 0.2,
    overwrite: bool = False,
    events_uri: str | None = None,
) -> Path:
    """Export the run in ``run_dir`` to format ``to`` (one of FORMATS); returns the output path.

    ``out`` defaults to ``<run_dir>/export/<to>``. ``hf`` writes ``train/`` and ``test/`` (the
    last ``test_fraction`` of ticks), the personas and the catalog, and a dataset card
    ``README.md``, so that ``datasets.load_dataset("parquet", data_dir=out)`` loads the splits.
    ``events_uri``: where the run's event parts are when not in ``RUN/events`` (never taken
    from the run directory). RecBole's files are named after ``out``'s folder (RecBole's
    dataset name), never after anything the run directory says.
    """
    run_dir = Path(run_dir)
    if to not in FORMATS:
        raise InputError(f"--to: expected one of {', '.join(FORMATS)}, got {to!r}")
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if to == "hf-chat":
        return _export_conversations(run_dir, out, overwrite)
    if not outputs.is_run_manifest(run_dir / "manifest.json"):
        raise InputError(
            f"{run_dir}: incomplete run (no manifest.json) or not simrec's; finish it with "
            f"`simrec run --resume {run_dir}` first"
        )
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction: expected a number in (0, 1), got {test_fraction!r}")
    manifest = outputs.read_json(run_dir / "manifest.json", "a run's manifest")
    target = Path(out) if out else run_dir / "export" / to
    if outputs.check_out_dir(target, "export") and not overwrite:
        raise OutputExistsError(f"{target}: already exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    events = outputs.read_events(run_dir, manifest=manifest, events_uri=events_uri)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        if to == "hf":
            _export_hf(run_dir, manifest, events, tmp, test_fraction, target)
        elif to == "recbole":
            _export_recbole(run_dir, recbole_name(target), events, tmp)
        else:
            {"obp": _export_obp, "csv": _export_csv}[to](run_dir, manifest, events, tmp)
        _move_into(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the folder this call made, and only it
    return target


def _move_into(tmp: Path, target: Path) -> None:
    """Replace the export in ``target`` by the finished one in ``tmp``: a new target is the
    renamed folder; an existing one loses only its earlier export's files."""
    if not target.exists():
        outputs.claim(tmp, "export")
        try:
            os.replace(tmp, target)
        except OSError:  # another export made it meanwhile
            raise OutputExistsError(f"{target}: appeared while exporting; not replaced") from None
    else:
        with outputs.owning(target, "export", overwrite=True, what="export"):
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                dest = target / f.relative_to(tmp)
                outputs.check_folder(dest.parent)
                dest.parent.mkdir(exist_ok=True)
                outputs.durable_replace(f, dest)
    outputs.fsync_dir(target.parent)


def _impressions(ev: pa.Table) -> pa.Table:
    return ev.filter(pc.equal(ev["event_type"], "impression"))


# ---------------------------------------------------------------------------- RecBole


def recbole_name(target: Path) -> str:
    """The RecBole dataset name of an export into folder ``target``: the folder's name (RecBole
    reads ``data_path/NAME/NAME.inter``), or ``simrec`` when that name is not a plain one.

    >>> recbole_name(Path("exports/ml-sim"))
    'ml-sim'
    >>> recbole_name(Path("exports/.."))
    'simrec'
    """
    from simrec.config import is_safe_name

    return target.name if is_safe_name(target.name) else "simrec"


def _export_recbole(run_dir: Path, name: str, events: pa.Table, out: Path) -> None:
    """``<name>.inter`` (one row per impression; label = watched), ``.user``, ``.item``:
    tab-separated with RecBole's ``name:type`` headers (token, token_seq, float)."""
    ev = _impressions(events).to_pandas()
    inter = pd.DataFrame(
        {
            "user_id:token": ev.user_id,
            "item_id:token": ev.item_id,
            "label:float": ev.clicked.astype(int),
            "rating:float": ev.rating,
            "timestamp:float": ev.timestamp.astype("int64") // 10**9,
            "session_id:token": ev.session_id,
            "slate_id:token": ev.slate_id,
            "position:token": ev.position,
            "examined:float": ev.examined.astype(int),
            "pscore_item_position:float": ev.pscore_item_position,
            "pscore_slate:float": ev.pscore_slate,
            "pscore_cascade:float": ev.pscore_cascade,
            "policy:token": ev.policy.astype(str),
        }
    )
    _write_atomic_tsv(inter, out / f"{name}.inter")
    users = pq.read_table(run_dir / "users.parquet").to_pandas()
    _write_atomic_tsv(
        pd.DataFrame(
            {
                "user_id:token": users.user_id,
                "source_user_id:token": users.source_user_id,
                "activity:float": users.activity,
                "conformity:float": users.conformity,
                "diversity:float": users.diversity,
                "liked_genres:token_seq": users.liked_genres.map(_tokens),
            }
        ),
        out / f"{name}.user",
    )
    items = pq.read_table(run_dir / "items.parquet").to_pandas()
    _write_atomic_tsv(
        pd.DataFrame(
            {
                "item_id:token": items.item_id,
                "title:token_seq": items.title.map(_clean),
                "genres:token_seq": items.genres.map(_tokens),
                "popularity:float": items.popularity,
            }
        ),
        out / f"{name}.item",
    )


def _tokens(values) -> str:
    """A token_seq field: space-separated tokens, inner spaces made underscores."""
    return " ".join(_clean(v).replace(" ", "_") for v in values)


def _clean(text) -> str:
    return str(text).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _write_atomic_tsv(df: pd.DataFrame, path: Path) -> None:
    with outputs.replacing(path) as f:
        df.to_csv(f, sep="\t", index=False, na_rep="", lineterminator="\n")


# ---------------------------------------------------------------------------- OBP


def _export_obp(run_dir: Path, manifest: dict, events: pa.Table, out: Path) -> None:
    """``bandit_feedback.npz`` with Open Bandit Pipeline's keys (one round per impression):
    n_rounds, n_actions, action, position, reward, pscore (item-position), context (persona
    traits and taste of the user), action_context (genre indicators and log popularity of the
    item); plus slate_id, user_id, tick, pscore_slate and pscore_cascade. ``meta.json``
    names the context columns."""
    ev = _impressions(events)
    items = pq.read_table(run_dir / "items.parquet").to_pandas()
    users = pq.read_table(run_dir / "users.parquet").to_pandas()
    action = pd.Index(items.item_id).get_indexer(ev["item_id"].to_pandas())
    user = ev["user_id"].to_numpy()
    traits = users[["activity", "conformity", "diversity"]].to_numpy(np.float64)
    taste = np.stack(users.taste.to_numpy()).astype(np.float64)
    user_features = np.hstack([traits, taste])
    genres = sorted({g for gl in items.genres for g in gl})
    gi = {g: j for j, g in enumerate(genres)}
    action_context = np.zeros((len(items), len(genres) + 1))
    for i, gl in enumerate(items.genres):
        action_context[i, [gi[g] for g in gl]] = 1.0
    action_context[:, -1] = np.log1p(items.popularity.to_numpy(np.float64))

    def col(name: str) -> np.ndarray:
        return ev[name].to_numpy(zero_copy_only=False)

    bundle = {
        "n_rounds": np.int64(ev.num_rows),
        "n_actions": np.int64(len(items)),
        "len_list": np.int64(int(pc.max(ev["position"]).as_py()) + 1 if ev.num_rows else 0),
        "action": action.astype(np.int64),
        "position": col("position").astype(np.int64),
        "reward": col("clicked").astype(np.int64),
        "pscore": col("pscore_item_position").astype(np.float64),
        "pscore_slate": np.asarray(col("pscore_slate"), np.float64),
        "pscore_cascade": np.asarray(col("pscore_cascade"), np.float64),
        "context": user_features[user],
        "action_context": action_context,
        "user_id": user.astype(np.int64),
        "slate_id": col("slate_id").astype(np.int64),
        "tick": col("tick").astype(np.int64),
    }
    with outputs.replacing(out / "bandit_feedback.npz", ".tmp.npz") as f:
        np.savez_compressed(f, **bundle)
    meta = {
        "run_id": manifest["run_id"],
        "policy": manifest["policy"],
        "context_columns": ["activity", "conformity", "diversity"]
        + [f"taste_{j}" for j in range(taste.shape[1])],
        "action_context_columns": [f"genre={g}" for g in genres] + ["log1p_popularity"],
        "action_ids": items.item_id.astype(str).tolist(),
        "load": "dict(np.load('bandit_feedback.npz')) gives OBP's bandit_feedback dictionary",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


# ---------------------------------------------------------------------------- CSV


def _export_csv(run_dir: Path, manifest: dict, events: pa.Table, out: Path) -> None:
    """events.csv, users.csv (lists joined with '|'), items.csv, metrics.csv."""
    ev = events.to_pandas()
    _defuse_formulas(ev).to_csv(out / "events.csv", index=False)
    for name in ("users", "items", "metrics"):
        df = pq.read_table(run_dir / f"{name}.parquet").to_pandas()
        for c in df.columns:
            if df[c].map(lambda v: isinstance(v, (list, np.ndarray))).any():
                df[c] = df[c].map(lambda v: "|".join(map(str, v)))
        _defuse_formulas(df).to_csv(out / f"{name}.csv", index=False)


def _defuse_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (a title starting with '=', '+',
    '-', '@', tab or carriage return) get a leading apostrophe, as OWASP advises for CSV."""
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].map(
                lambda v: (
                    "'" + v
                    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r")
                    else v
                )
            )
    return df


# ---------------------------------------------------------------------------- Hugging Face


def _export_hf(
    run_dir: Path, manifest: dict, ev: pa.Table, out: Path, test_fraction: float, target: Path
) -> None:
    """The Hugging Face layout in ``out``: ``train/`` and ``test/`` split by tick, the
    personas and the catalog as they are in the run, and the card (which names ``target``)."""
    ticks = int(manifest["counts"]["ticks"])
    cut = max(1, int(round(ticks * (1 - test_fraction))))
    for split, mask in (
        ("train", pc.less(ev["tick"], cut)),
        ("test", pc.greater_equal(ev["tick"], cut)),
    ):
        (out / split).mkdir()
        pq.write_table(ev.filter(mask), out / split / "events.parquet", compression="zstd")
    for name in ("users.parquet", "items.parquet"):
        shutil.copyfile(run_dir / name, out / name)
    (out / "README.md").write_text(_card(run_dir, manifest, cut, ticks, target))


def _card(run_dir: Path, manifest: dict, cut: int, ticks: int, target: Path) -> str:
    schema = json.loads((run_dir / "schema.json").read_text())["events"]
    counts = manifest["counts"]
    columns = "\n".join(
        f"| `{_said(c['name'])}` | {_said(c['type'])} | {_said(c['nullable'])} |" for c in schema
    )
    said = {k: _said(manifest.get(k)) for k in ("run_id", "simrec_version", "policy", "seed")}
    source = _said((manifest.get("data") or {}).get("source"))
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: train/*.parquet
  - split: test
    path: test/*.parquet
tags:
- recommender-systems
- synthetic
- simulation
---
# Synthetic recommender logs: {said["run_id"]}

Simulated by simrec {said["simrec_version"]} (`simrec run`, run `{said["run_id"]}`;
the full configuration is in the run's `manifest.json`) and exported with `simrec export
{run_dir.name} --to hf`: a population of {counts["agents"]:,} user agents calibrated on
`{source}` browsed pages served by the `{said["policy"]}` policy for
{ticks} ticks (seed {said["seed"]}). Every row is an impression (or a share) with its
outcome and the logging policy's propensities. These users are simulated: see the run's
fidelity report before drawing conclusions about real users.

Splits by tick: `train` = ticks 0..{cut - 1}, `test` = ticks {cut}..{ticks - 1}.

```python
import datasets
ds = datasets.load_dataset("parquet", data_dir="{target.name}")
```

Counts: {counts["impressions"]:,} impressions, {counts["clicks"]:,} watches, {counts["sessions"]:,}
sessions. The personas are in `users.parquet`, the catalog in `items.parquet`; the
configuration and the input files' hashes are in the run's `manifest.json`.

| column | type | nullable |
|---|---|---|
{columns}
"""


def _said(value: object) -> str:
    """A value from a run's files as card text: one clean line, markup and backticks escaped
    (a card is Markdown that a hub renders)."""
    import html

    from simrec.trust import TITLE_LIMIT, clean_text

    return html.escape(clean_text(value, TITLE_LIMIT)).replace("`", "&#96;").replace("|", "&#124;")


# ---------------------------------------------------------------------------- dialogues


def _export_conversations(conv_dir: Path, out: str | Path | None, overwrite: bool) -> Path:
    """``simrec converse`` output as a chat corpus (``hf-chat``): ``dialogues.jsonl``, one
    conversation per line with ``messages`` (the simulated user as ``user``, the CRS as
    ``assistant``) and ``metadata`` (arm, user, target, persona, outcome, what was recommended
    at each turn), the format chat fine-tuning tools read, and a dataset card."""
    from simrec.conversation.run import found_target

    manifest_path = conv_dir / "manifest.json"
    manifest = outputs.read_json(manifest_path, "a conversation run's manifest")
    if manifest.get("kind") != "converse":
        raise InputError(
            f"{conv_dir}: --to hf-chat exports the output of simrec converse (its manifest "
            f"has kind: converse), found {manifest.get('kind') or 'a run'}"
        )
    target = Path(out) if out else conv_dir / "export" / "hf-chat"
    if outputs.check_out_dir(target, "export") and not overwrite:
        raise OutputExistsError(f"{target}: already exists; pass --overwrite to replace it")
    conv = pq.read_table(conv_dir / "conversations.parquet").to_pandas()
    personas = {}
    if (conv_dir / "personas.parquet").exists():
        p = pq.read_table(conv_dir / "personas.parquet").to_pandas()
        personas = dict(zip(p.user_id.tolist(), p.profile.tolist(), strict=True))
    titles = {}
    if (conv_dir / "targets.parquet").exists():
        t = pq.read_table(conv_dir / "targets.parquet").to_pandas()
        titles = dict(zip(t.item_id.tolist(), t.title.tolist(), strict=True))
    lines = []
    # rows are in the order they were said; a group keeps that order
    for (arm, c), whole in conv.groupby(["arm", "conversation"], sort=True, observed=True):
        d = whole[whole.speaker != "rating"]
        rated = whole[whole.speaker == "rating"]
        messages = [
            {"role": "user" if sp == "user" else "assistant", "content": str(text)}
            for sp, text in zip(d.speaker, d.text, strict=True)
        ]
        last_user = d[d.speaker == "user"].iloc[-1]
        accepted = found_target(
            last_user.target_item_id, list(last_user.item_ids), list(last_user.verdicts)
        )
        uid = d.user_id.iloc[0]
        wanted = d.target_item_id.iloc[0]
        meta = {
            "arm": str(arm),
            "conversation": int(c),
            "user_id": _plain(uid),
            "persona": personas.get(uid),
            "target_item_id": _plain(wanted),
            "target_title": titles.get(wanted),
            "success": bool(accepted),
            "turns": int(d.turn.max()),
            "closing_rating": int(rated.rating.iloc[0]) if len(rated) else None,
            "closing_reason": str(rated.text.iloc[0]) if len(rated) else None,
            "recommended": [[_plain(i) for i in ids] for ids in d[d.speaker == "crs"].item_ids],
        }
        lines.append(json.dumps({"messages": messages, "metadata": meta}, ensure_ascii=False))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (tmp / "dialogues.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""))
        (tmp / "README.md").write_text(_chat_card(manifest, len(lines)))
        _move_into(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _plain(value):
    """A numpy scalar as a JSON-ready Python value."""
    return value.item() if hasattr(value, "item") else value


def _chat_card(manifest: dict, n: int) -> str:
    arms = ", ".join(
        f"{_said(k)} ({_said(v.get('spec') if isinstance(v, dict) else v)})"
        for k, v in (manifest.get("arms") or {}).items()
    )
    return (
        "---\nconfigs:\n- config_name: default\n  data_files: dialogues.jsonl\n---\n\n"
        "# Simulated CRS dialogues (simrec converse)\n\n"
        f"{n} conversations between simulated users ({_said(manifest.get('user_brain'))} brain) "
        f"and conversational recommenders: {arms}. Each user looked for one target item "
        f"({_said(manifest.get('targets'))} targets; what users and recommenders knew: "
        f"interactions {_said(manifest.get('cutoff'))}) for at most "
        f"{_said(manifest.get('turns'))} turns. Data: "
        f"{_said((manifest.get('data') or {}).get('source'))}.\n\n"
        "Each line of `dialogues.jsonl` holds `messages` (the simulated user as `user`, the "
        "recommender as `assistant`), the format chat fine-tuning tools read, and `metadata`: "
        "the arm, the user and its persona, the target, whether the user accepted it, and the "
        "items recommended at each turn. These are synthetic dialogues: the users are "
        "simulated.\n"
    )

"""Arrow schemas of every output table. ``schema.json`` in a run directory is written from these."""

from __future__ import annotations

import pyarrow as pa

_DICT = pa.dictionary(pa.int32(), pa.string())


def events_schema(item_id_type: pa.DataType) -> pa.Schema:
    """One row per event (``events/part-*.parquet``): ``impression`` rows, and ``share`` rows
    (a user shared an item with ``share_recipients`` friends), which leave the slate columns
    (page, slate_id, position, policy, score, propensities, examined, clicked, left_after,
    decided_by) null. ``social_signal``: friends' share signal on an impression, null when the
    run has no social graph. ``repeat``: whether the user had consumed the impression's item
    before (seed log or run), null where ``simulation.repeats`` is off (a consumed item is then
    never shown); ``clicked`` and ``repeat`` is a repeat consumption."""
    return pa.schema(
        [
            pa.field("run_id", _DICT, False),
            pa.field("event_type", _DICT, False),
            pa.field("tick", pa.int32(), False),
            pa.field("timestamp", pa.timestamp("s", tz="UTC"), False),
            pa.field("session_id", pa.int64(), False),
            pa.field("user_id", pa.int64(), False),
            pa.field("page", pa.int16(), True),
            pa.field("slate_id", pa.int64(), True),
            pa.field("position", pa.int16(), True),
            pa.field("item_id", item_id_type, False),
            pa.field("policy", _DICT, True),
            pa.field("score", pa.float32(), True),
            pa.field("pscore_item_position", pa.float64(), True),
            pa.field("pscore_slate", pa.float64(), True),
            pa.field("pscore_cascade", pa.float64(), True),
            pa.field("propensity_source", _DICT, True),
            pa.field("examined", pa.bool_(), True),
            pa.field("clicked", pa.bool_(), True),
            pa.field("rating", pa.float32(), True),
            pa.field("left_after", pa.bool_(), True),
            pa.field("decided_by", _DICT, True),
            pa.field("reason", pa.string(), True),
            pa.field("feeling", pa.string(), True),
            pa.field("llm_model", pa.string(), True),
            pa.field("prompt_hash", pa.string(), True),
            pa.field("prompt_tokens", pa.int32(), True),
            pa.field("completion_tokens", pa.int32(), True),
            pa.field("social_signal", pa.float32(), True),
            pa.field("share_recipients", pa.int32(), True),
            pa.field("repeat", pa.bool_(), True),
        ]
    )


def users_schema(source_id_type: pa.DataType) -> pa.Schema:
    """One row per agent (``users.parquet``)."""
    return pa.schema(
        [
            pa.field("user_id", pa.int64(), False),
            pa.field("source_user_id", source_id_type, False),
            pa.field("activity", pa.float32(), False),
            pa.field("conformity", pa.float32(), False),
            pa.field("diversity", pa.float32(), False),
            pa.field("arrival_rate", pa.float32(), False),
            pa.field("rating_bias", pa.float32(), False),
            pa.field("n_interactions", pa.int64(), False),
            pa.field("taste", pa.list_(pa.float32()), False),
            pa.field("liked_genres", pa.list_(pa.string()), False),
            pa.field("disliked_genres", pa.list_(pa.string()), False),
            pa.field("profile", pa.string(), False),
            pa.field("final_satisfaction", pa.float32(), False),
            pa.field("churned", pa.bool_(), False),
        ]
    )


def items_schema(item_id_type: pa.DataType) -> pa.Schema:
    """One row per catalog item (``items.parquet``)."""
    return pa.schema(
        [
            pa.field("item_id", item_id_type, False),
            pa.field("title", pa.string(), False),
            pa.field("genres", pa.list_(pa.string()), False),
            pa.field("text", pa.string(), False),
            pa.field("popularity", pa.int64(), False),
        ]
    )


METRIC_COLUMNS: dict[str, pa.DataType] = {
    "tick": pa.int32(),
    "active_users": pa.int64(),
    "sessions": pa.int64(),
    "pages": pa.int64(),
    "impressions": pa.int64(),
    "clicks": pa.int64(),
    "ctr": pa.float64(),
    "mean_rating": pa.float64(),
    "coverage": pa.float64(),
    "consumed_coverage": pa.float64(),
    "gini": pa.float64(),
    "genre_entropy": pa.float64(),
    "mean_satisfaction": pa.float64(),
    "churned_users": pa.int64(),
    "shares": pa.int64(),
    "retrained": pa.bool_(),
}


def metrics_schema() -> pa.Schema:
    """One row per tick (``metrics.parquet``), from the Mesa DataCollector."""
    return pa.schema([pa.field(k, t, k == "mean_rating") for k, t in METRIC_COLUMNS.items()])


def interviews_schema() -> pa.Schema:
    """One row per interviewed agent (``interviews.parquet``, LLM and hybrid brains)."""
    return pa.schema(
        [
            pa.field("user_id", pa.int64(), False),
            pa.field("score", pa.int8(), True),
            pa.field("reason", pa.string(), True),
            pa.field("llm_model", pa.string(), False),
            pa.field("prompt_hash", pa.string(), False),
            pa.field("prompt_tokens", pa.int32(), False),
            pa.field("completion_tokens", pa.int32(), False),
            pa.field("error", pa.string(), True),
        ]
    )


def reflections_schema() -> pa.Schema:
    """Each agent's latest reflection (``reflections.parquet``, LLM and hybrid brains)."""
    return pa.schema(
        [
            pa.field("user_id", pa.int64(), False),
            pa.field("tick", pa.int32(), False),
            pa.field("note", pa.string(), False),
            pa.field("source", pa.string(), False),
            pa.field("memory_entries", pa.int32(), False),
            pa.field("memories_written", pa.int64(), False),
        ]
    )


def schema_document(item_id_type: pa.DataType, source_id_type: pa.DataType) -> dict:
    """The contents of ``schema.json``: column name, Arrow type and nullability per table."""
    tables = {
        "events": events_schema(item_id_type),
        "users": users_schema(source_id_type),
        "items": items_schema(item_id_type),
        "metrics": metrics_schema(),
        "interviews": interviews_schema(),
        "reflections": reflections_schema(),
    }
    return {
        name: [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
        for name, schema in tables.items()
    }


def arrow_id_type(ids) -> pa.DataType:
    """int64 for integer ids, string otherwise."""
    return (
        pa.int64()
        if getattr(ids, "dtype", None) is not None and ids.dtype.kind in "iu"
        else pa.string()
    )

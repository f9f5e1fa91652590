"""The conversational recommender contract check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from simrec.data import Dataset


def check_crs(factory: Callable[[], Any], *, world: Dataset | None = None) -> None:
    """Fit ``factory()`` and check the ConversationalRecommender contract: a non-empty
    ``name``; ``respond`` answers a batch of dialogues with one Reply per dialogue, in order,
    each with a str text and at most MAX_ITEMS distinct catalog item indices; an empty batch
    gets an empty list; the same dialogues get the same replies (alone or in a batch).

    >>> from simrec.conversation import BuiltinCRS
    >>> check_crs(BuiltinCRS)
    """
    from simrec.conversation.dialogue import (
        MAX_ITEMS,
        ConversationalRecommender,
        Dialogue,
        Turn,
    )
    from simrec.testing.recommender import contract_world

    data = world or contract_world()
    n_items = data.catalog.n_items
    crs = factory()
    name = getattr(crs, "name", None)
    assert isinstance(name, str) and name, "a CRS needs a non-empty str attribute 'name'"
    assert isinstance(crs, ConversationalRecommender), f"{name}: missing fit() or respond()"
    crs.fit(data.interactions.to_arrow(), data.catalog)
    genres = data.catalog.genre_names
    dialogues = [
        Dialogue(
            c, c % data.interactions.n_users, [Turn("user", f"I want {genres[c % len(genres)]}")]
        )
        for c in range(7)
    ]
    assert crs.respond([]) == [], f"{name}: an empty batch must get an empty list"
    replies = crs.respond(dialogues)
    assert isinstance(replies, list) and len(replies) == len(dialogues), (
        f"{name}: respond() must return one reply per dialogue"
    )
    for r in replies:
        assert isinstance(r.text, str), f"{name}: a reply's text must be a str"
        items = [int(i) for i in r.items]
        assert len(items) <= MAX_ITEMS, f"{name}: at most {MAX_ITEMS} items per reply"
        assert len(set(items)) == len(items), f"{name}: a reply recommends an item twice"
        assert all(0 <= i < n_items for i in items), f"{name}: items must be catalog indices"
    alone = crs.respond(dialogues[3:4])
    assert [tuple(np.asarray(r.items).tolist()) for r in alone] == [
        tuple(np.asarray(replies[3].items).tolist())
    ], f"{name}: a dialogue must get the same reply alone as in a batch"

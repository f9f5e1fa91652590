"""The built-in conversational recommender: a retrieval baseline (``--crs builtin[:POLICY]``)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from simrec.conversation.dialogue import MAX_ITEMS, Dialogue, Reply
from simrec.data.dataset import Catalog
from simrec.environments.base import PolicyRandomness, history_matrix
from simrec.rng import Streams


def _tokens(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower())


class BuiltinCRS:
    """A retrieval baseline: the user's words so far matched against each item's description
    (title, categories, era, labelled knowledge-graph facts) with TF-IDF, plus a prior from a
    recommendation policy fitted on the log (``policy``'s top ``prior_k`` items for the user,
    weighted by rank). Items the user already has in its past or rejected in this conversation
    are never recommended. Deterministic."""

    family = "content"

    def __init__(
        self, policy: str = "popular", prior_weight: float = 0.1, prior_k: int = 200
    ) -> None:
        from simrec.environments.registry import make_policy

        self.name = f"builtin:{policy}"
        self.policy = make_policy(policy)
        self.prior_weight, self.prior_k = float(prior_weight), int(prior_k)

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from simrec.conversation.facts import ItemFacts

        facts = ItemFacts(catalog)
        docs = [
            _tokens(" ".join([str(catalog.display_titles[i])] + [f.value for f in facts.of(i)]))
            for i in range(catalog.n_items)
        ]
        self.vectorizer = TfidfVectorizer(
            sublinear_tf=True, stop_words="english", token_pattern=r"(?u)\b\w+\b"
        )
        self.items = self.vectorizer.fit_transform(docs).tocsr()  # (n_items, vocab), L2 rows
        self.catalog = catalog
        self.seen = history_matrix(interactions, catalog.n_items)  # (n_users, n_items)
        self.policy.fit(interactions, catalog)
        self.streams = Streams(0)

    def _query(self, d: Dialogue) -> str:
        """The user's words, less the titles this CRS showed it (which the user names only to
        turn them down)."""
        text = d.user_text()
        shown = {i for t in d.turns if t.speaker == "user" for i in t.items}
        for i in sorted(shown):
            text = text.replace(str(self.catalog.display_titles[i]), " ")
        return _tokens(text)

    def respond(self, dialogues: list[Dialogue]) -> list[Reply]:
        if not dialogues:
            return []
        n_items = self.catalog.n_items
        queries = self.vectorizer.transform([self._query(d) for d in dialogues])
        score = np.asarray((queries @ self.items.T).todense(), np.float64)  # (n, n_items)
        users = np.array([d.user for d in dialogues], np.int64)
        if users.max() >= self.seen.shape[0]:  # users with no past in the fit log
            self.seen.resize((int(users.max()) + 1, n_items))
        seen = self.seen[users]
        k = min(self.prior_k, n_items)
        slates = self.policy.recommend(
            users, k, exclude=seen, rng=PolicyRandomness(self.streams, 0, 0, "crs")
        )
        rows = np.repeat(np.arange(len(dialogues)), k)
        valid = slates.items.ravel() >= 0
        prior = np.zeros_like(score)
        ranks = np.tile(np.arange(k, dtype=np.float64), len(dialogues))
        prior[rows[valid], slates.items.ravel()[valid]] = 1.0 - ranks[valid] / k
        score += self.prior_weight * prior
        score[seen.nonzero()] = -np.inf
        for r, d in enumerate(dialogues):
            score[r, list(d.rejected())] = -np.inf
        # best first, ties to the lower index; excluded items (-inf) sort last
        top = np.argsort(-score, axis=1, kind="stable")[:, :MAX_ITEMS]
        replies = []
        for row, order in zip(score, top, strict=True):
            items = tuple(int(i) for i in order if np.isfinite(row[i]))
            titles = [str(self.catalog.display_titles[i]) for i in items[:3]]
            text = "How about " + _join(titles) + "?" if titles else "I have nothing more."
            replies.append(Reply(text, items))
        return replies


def _join(words: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]

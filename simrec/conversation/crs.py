"""Conversational recommenders under test: the protocol, the built-in baseline, and building
one from a spec.

A CRS is fitted once on the log the users' visible past comes from, then answers every open
dialogue of a turn in one batched call: ``respond(dialogues) -> replies``, one
:class:`Reply` (a text and a ranked list of catalog item indices) per dialogue, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from simrec.data.dataset import Catalog
from simrec.environments.base import PolicyRandomness, history_matrix, resolve_class
from simrec.errors import ConfigError
from simrec.rng import Streams

MAX_ITEMS = 50  # the most items a reply may rank (Recall@50 needs 50)


@dataclass(frozen=True)
class Turn:
    """One utterance. ``speaker``: ``user`` or ``crs``; ``items``: for the CRS, the item
    indices it recommended (ranked); for the user, the items its ``verdicts`` (``accept`` or
    ``reject``) are about, the ones it was shown."""

    speaker: str
    text: str
    items: tuple[int, ...] = ()
    verdicts: tuple[str, ...] = ()
    decided_by: str = ""  # who produced it: the user brain, the CRS, or fallback:<brain>
    prompt_hash: str | None = None  # LLM turns: the prompt's hash and the tokens it took
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Dialogue:
    """An open conversation as the CRS sees it: ``user`` is the user's index in the log the
    CRS was fitted on (its visible past), ``turns`` everything said so far, oldest first."""

    conversation: int
    user: int
    turns: list[Turn] = field(default_factory=list)

    def rejected(self) -> set[int]:
        """The items the user has turned down in this conversation."""
        return {
            i
            for t in self.turns
            if t.speaker == "user"
            for i, v in zip(t.items, t.verdicts, strict=True)
            if v == "reject"
        }

    def user_text(self) -> str:
        return " ".join(t.text for t in self.turns if t.speaker == "user")


@dataclass(frozen=True)
class Reply:
    """A CRS's answer: what it says and the catalog item indices it recommends, best first
    (at most MAX_ITEMS; the user is shown the first few)."""

    text: str
    items: tuple[int, ...]
    prompt_hash: str | None = None  # an LLM-driven CRS: its prompt's hash and tokens
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class ConversationalRecommender(Protocol):
    """What ``simrec converse`` needs from a CRS: ``name``, ``fit`` and a batched ``respond``.
    :func:`simrec.testing.check_crs` checks a class against this contract."""

    name: str

    def fit(self, interactions: pa.Table, catalog: Catalog) -> None:
        """Learn from the visible log (columns user_index, item_index, rating, timestamp)."""

    def respond(self, dialogues: list[Dialogue]) -> list[Reply]:
        """One reply per dialogue, in order."""


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


def make_crs(
    spec: str,
    config=None,
    base_url: str | list[str] | None = None,
    api_key_env: str | None = None,
):
    """``builtin`` or ``builtin:POLICY`` (the baseline ranked with a policy); ``openai:MODEL``,
    ``vllm:MODEL`` or ``local`` (an LLM asked for titles, which are resolved to catalog items;
    ``base_url``: its OpenAI-compatible server(s), with the key in the environment variable
    ``api_key_env`` (none by default: the simulated users' key is theirs, never sent to the
    CRS under test); ``config``: the run config whose ``llm`` section supplies the cache,
    timeouts and sampling); or ``package.module:Class``
    (instantiated without arguments). ConfigError naming the spec otherwise."""
    head, _, rest = spec.partition(":")
    if head == "builtin":
        return BuiltinCRS(rest or "popular")
    if head in ("openai", "vllm") or spec == "local":
        from simrec.conversation.llm import LLMCRS

        return LLMCRS.from_spec(spec, config, base_url, api_key_env)
    if ":" not in spec:
        raise ConfigError(
            f"--crs {spec!r}: expected builtin, builtin:POLICY or package.module:Class"
        )
    cls = resolve_class(spec, {}, "crs")
    lacking = [m for m in ("fit", "respond") if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or lacking:
        raise ConfigError(
            f"--crs {spec!r}: expected a ConversationalRecommender class (methods fit and "
            f"respond), got {'a class missing ' + ', '.join(lacking) if lacking else cls!r}; "
            f"nothing of it was run"
        )
    crs = cls()
    if not isinstance(getattr(crs, "name", None), str):
        crs.name = spec
    return crs

"""What the catalog holds, in words: the vocabulary of a catalog domain.

Prompts, written profiles, interview questions, reports and augmentation facts speak of the
domain's items and of consuming them with its verb (watch a movie, read a book, buy a product,
visit a place); event columns keep their names (``clicked`` means consumed, whatever the
domain). ``data.domain`` (``--domain``) names a built-in domain or defines one in config; left
unset, it is inferred from the data (MovieLens and the synthetic world are movies, RecBole
datasets by their name) and is otherwise ``items``.

>>> d = domain("products")
>>> d.item, d.verb, d.verb_past, d.user, d.key
('product', 'buy', 'bought', 'shopper', 'buy')
>>> infer_domain("recbole:Amazon_Books"), infer_domain("recbole:yelp2018"), infer_domain("table")
('books', 'venues', 'items')
>>> custom = domain({"name": "recipes", "item": "recipe", "verb": "cook"})
>>> custom.items, custom.verb_past, custom.verb_3rd, custom.verb_ing, custom.user
('recipes', 'cooked', 'cooks', 'cooking', 'user')
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simrec.errors import ConfigError

ENRICH_ATTRIBUTES = ("era", "mood", "audience_group")
# fields the answer schemas already use: the chosen-positions field cannot take their names
_ANSWER_FIELDS = frozenset(
    ("ratings", "next", "feeling", "reason", "skip", "score", "taste", "service", "description")
    + ("genres", "tags")
    + ENRICH_ATTRIBUTES
)


class Domain(BaseModel):
    """A catalog domain's vocabulary. Only ``name``, ``item`` and ``verb`` are required when
    one is defined in config; the other forms default to plain English inflections (check
    them: "buy" needs ``verb_past: bought``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, max_length=40, description="the domain's name")
    item: str = Field(..., min_length=1, max_length=40, description="the item noun: movie")
    items: str = Field("", max_length=40, description="plural (default: item + s)")
    verb: str = Field(..., min_length=1, max_length=40, description="consume verb: watch")
    verb_past: str = Field("", max_length=40, description="past tense: watched")
    verb_3rd: str = Field("", max_length=40, description="third person: watches")
    verb_ing: str = Field("", max_length=40, description="gerund: watching")
    user: str = Field("user", min_length=1, max_length=40, description="who uses it: viewer")
    service: str = Field(
        "", max_length=80, description="the service (default: 'ITEM recommendation service')"
    )
    category: str = Field("category", min_length=1, max_length=40, description="genre, topic")
    categories: str = Field("", max_length=40, description="plural (default: category + s)")
    rating: str = Field(
        "how much you liked it", min_length=1, max_length=80, description="what a rating says"
    )
    attributes: tuple[str, ...] = Field(
        (),
        description="the descriptive attributes an LLM may answer when enriching items, among "
        + ", ".join(ENRICH_ATTRIBUTES)
        + " (era only where the data has a date field)",
    )

    @model_validator(mode="before")
    @classmethod
    def _inflect(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        item, verb = str(out.get("item", "")), str(out.get("verb", ""))
        head, _, tail = verb.partition(" ")  # "listen to": inflect "listen", keep "to"
        rest = f" {tail}" if tail else ""
        defaults = {
            "items": _plural(item),
            "verb_past": (head + ("d" if head.endswith("e") else "ed")) + rest,
            "verb_3rd": _plural(head) + rest,
            "verb_ing": (head[:-1] if head.endswith("e") and len(head) > 2 else head)
            + "ing"
            + rest,
            "service": f"{item} recommendation service",
            "categories": _plural(str(out.get("category", "category"))),
        }
        for key, value in defaults.items():
            if not out.get(key):
                out[key] = value
        unknown = sorted(set(out.get("attributes") or ()) - set(ENRICH_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"attributes: expected some of {', '.join(ENRICH_ATTRIBUTES)}, got {unknown}"
            )
        return out

    def with_words(self, **words: Any) -> Domain:
        """This domain with some of its words replaced; the forms derived from a replaced word
        (the plural of ``item``, the tenses of ``verb``, the plural of ``category``, a service
        named after the item) are derived again unless given too.

        >>> music = DOMAINS["music"].with_words(item="artist")
        >>> music.items, music.verb, music.service
        ('artists', 'listen to', 'music recommendation service')
        """
        own = self.model_dump()
        derived = {
            "item": ("items",),
            "verb": ("verb_past", "verb_3rd", "verb_ing"),
            "category": ("categories",),
        }
        if own["service"] == f"{self.item} recommendation service":
            derived["item"] += ("service",)
        for word, forms in derived.items():
            if word in words:
                for form in forms:
                    if form not in words:
                        own.pop(form)
        return Domain.model_validate({**own, **words})

    @property
    def key(self) -> str:
        """The answer-schema field that lists the chosen positions: the verb's first word
        (``picks`` where that is another field's name or not a word)."""
        key = re.sub(r"\W+", "_", self.verb.split()[0].lower()).strip("_")
        return "picks" if not key or key[0].isdigit() or key in _ANSWER_FIELDS else key

    def words(self) -> dict[str, str]:
        """The template variables of the vocabulary: ``$item``, ``$items_noun`` (``$items``
        is the item list in page templates), ``$verb``, ``$verb_past``, ``$verb_3rd``,
        ``$verb_ing``, ``$user_noun``, ``$service``, ``$category``, ``$categories``,
        ``$rating_meaning``, ``$key``, ``$a_service`` (with its article)."""
        return {
            "a_service": f"{article(self.service)} {self.service}",
            "item": self.item,
            "items_noun": self.items,
            "verb": self.verb,
            "verb_past": self.verb_past,
            "verb_3rd": self.verb_3rd,
            "verb_ing": self.verb_ing,
            "user_noun": self.user,
            "service": self.service,
            "category": self.category,
            "categories": self.categories,
            "rating_meaning": self.rating,
            "key": self.key,
        }


def _plural(noun: str) -> str:
    if not noun:
        return noun
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def article(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its first letter: "an even-handed", "a harsh").

    >>> article("even-handed"), article("generous"), article("occasional")
    ('an', 'a', 'an')
    """
    return "an" if word[:1].lower() in "aeiou" else "a"


def and_list(words) -> str:
    """Words as English lists them.

    >>> and_list(["Drama"]), and_list(["A", "B"]), and_list(["A", "B", "C"])
    ('Drama', 'A and B', 'A, B and C')
    """
    words = [str(w) for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            name="movies",
            item="movie",
            verb="watch",
            user="viewer",
            category="genre",
            rating="how much you enjoyed the movie",
            attributes=ENRICH_ATTRIBUTES,
        ),
        Domain(
            name="books",
            item="book",
            verb="read",
            verb_past="read",
            user="reader",
            category="genre",
            rating="how much you enjoyed the book",
            attributes=ENRICH_ATTRIBUTES,
        ),
        Domain(
            name="music",
            item="track",
            verb="listen to",
            user="listener",
            service="music recommendation service",
            category="genre",
            rating="how much you enjoyed listening",
            attributes=("era", "mood"),
        ),
        Domain(
            name="products",
            item="product",
            verb="buy",
            verb_past="bought",
            verb_3rd="buys",
            user="shopper",
            service="online shop's recommendations",
            rating="how satisfied you are with the product",
            attributes=("audience_group",),
        ),
        Domain(
            name="venues",
            item="place",
            verb="visit",
            user="visitor",
            service="local places recommendation service",
            rating="how much you enjoyed the visit",
        ),
        Domain(
            name="news",
            item="article",
            verb="read",
            verb_past="read",
            user="reader",
            service="news recommendation service",
            category="topic",
            rating="how much the article was worth your time",
        ),
        Domain(
            name="games",
            item="game",
            verb="play",
            user="player",
            service="game store's recommendations",
            category="genre",
            rating="how much you enjoyed playing",
            attributes=("era", "audience_group"),
        ),
        Domain(
            name="items",
            item="item",
            verb="choose",
            verb_past="chose",
            service="recommendation service",
        ),
    )
}

# dataset names (RecBole's conventions) -> domain; first match wins
_NAME_HINTS = (
    (r"^(ml|movielens|netflix)|movie|film", "movies"),
    (r"book|goodreads", "books"),
    (r"lastfm|last\.fm|music|song|spotify|kkbox|million.?song|pandora|track", "music"),
    (r"yelp|foursquare|gowalla|brightkite|venue|poi", "venues"),
    (r"^mind|news|adressa|plista", "news"),
    (r"steam|game", "games"),
    (r"amazon|tmall|taobao|retail|diginetica|yoochoose|ali|jd|product|shop|ecommerce", "products"),
)


def infer_domain(source: str) -> str:
    """The domain a dataset's ``source`` suggests (``movielens-100k``, ``recbole:NAME``,
    ``synthetic``, ``table``); ``items`` where it says nothing."""
    if source.startswith(("movielens", "synthetic")):
        return "movies"
    name = source.split(":", 1)[1] if ":" in source else source
    name = name.lower()
    for pattern, dom in _NAME_HINTS:
        if re.search(pattern, name):
            return dom
    return "items"


def checked_domain(spec: str | dict | Domain) -> str | Domain:
    """A ``data.domain`` value checked: a built-in name as it is, a mapping as the
    :class:`Domain` it defines. Raises ValueError saying what is wrong (every wrong field of a
    mapping)."""
    if isinstance(spec, Domain):
        return spec
    if isinstance(spec, str):
        if spec not in DOMAINS:
            raise ValueError(
                f"expected one of {', '.join(DOMAINS)} or a mapping defining a domain "
                f"(name, item, verb, ...)"
            )
        return spec
    if isinstance(spec, dict):
        from pydantic import ValidationError

        try:
            if spec.get("name") in DOMAINS:  # a built-in with some words of one's own
                return DOMAINS[spec["name"]].with_words(**spec)
            return Domain.model_validate(spec)
        except ValidationError as err:
            wrong = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}"
                for e in err.errors()
            )
            raise ValueError(f"a domain needs name, item and verb ({wrong})") from None
    raise ValueError(f"expected a name or a mapping, not a {type(spec).__name__}")


def domain(spec: str | dict | Domain | None, source: str = "") -> Domain:
    """The :class:`Domain` of a config value: a built-in name, a mapping defining one, a
    Domain, or None (inferred from ``source``)."""
    if spec is None:
        return DOMAINS[infer_domain(source)]
    try:
        found = checked_domain(spec)
    except ValueError as err:
        raise ConfigError(f"data.domain: {err}, got {spec!r}") from None
    return DOMAINS[found] if isinstance(found, str) else found

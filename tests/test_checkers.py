"""The plug-in checkers of simrec.testing: each passes the built-in implementations and
catches a broken one with a message naming the broken promise."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simrec import build
from simrec.agents.brains.base import Brain, PageDecisions
from simrec.augment import (
    AugmentResult,
    InteractionAugmenter,
    ItemEnricher,
    ProfileWriter,
    visible,
)
from simrec.llm.base import ChatResult, ErrorKind
from simrec.testing import (
    FakeBackend,
    check_augmenter,
    check_backend,
    check_brain,
    contract_world,
)

ANSWER = {"watch": [1], "ratings": [4], "next": "leave", "feeling": "bored", "reason": "meh"}


def _utility(data, ctx):
    cfg = build.as_config({"seed": 0, "brain": {"taste_dim": 4}})
    return build.calibrate(cfg, data, users=None)[0]


def _llm(kind: str):
    def factory(data, ctx):
        cfg = build.as_config({"seed": 0, "brain": {"name": kind, "taste_dim": 4}})
        utility, _ = build.calibrate(cfg, data, users=None)
        return build.make_brain(cfg, utility, data, backend=FakeBackend([ANSWER]))[0]

    return factory


@pytest.mark.parametrize("factory", [_utility, _llm("llm"), _llm("hybrid")])
def test_check_brain_passes_the_built_in_brains(factory):
    check_brain(factory)


class _Broken:
    """The utility brain with one promise broken."""

    def __init__(self, inner, how):
        self.inner, self.how, self.name = inner, how, f"broken-{how}"
        self._calls = 0

    def arrivals(self, agents, tick, satisfaction):
        return self.inner.arrivals(agents, tick, satisfaction)

    def session_value(self, watched_value, watched):
        return self.inner.session_value(watched_value, watched)

    def end_sessions(self, agents, tick, value, satisfaction):
        return self.inner.end_sessions(agents, tick, value, satisfaction)

    def decide(self, views) -> PageDecisions:
        d = self.inner.decide(views)
        rating = d.rating.copy()
        clicked = d.clicked.copy()
        if self.how == "rating":  # a rating on a page that was not watched
            rating[~d.clicked] = 3.0
        elif self.how == "unexamined":  # a watch beyond what was examined
            clicked[:, -3] |= ~d.examined[:, -3] & (views.items[:, -3] >= 0)
        elif self.how == "call-order":  # randomness drawn per call, not per agent
            self._calls += 1
            leave = np.random.default_rng(self._calls).random(len(views)) < 0.5
            return PageDecisions(d.examined, clicked, rating, leave, d.decided_by)
        return PageDecisions(d.examined, clicked, rating, d.leave, d.decided_by)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("rating", "a rating without a watch"),
        ("unexamined", "a watched item was not examined"),
        ("call-order", "leave differs for the same batch twice"),
    ],
)
def test_check_brain_names_the_broken_promise(how, message):
    with pytest.raises(AssertionError, match=message):
        check_brain(lambda data, ctx: _Broken(_utility(data, ctx), how))


def test_check_brain_rejects_an_object_that_is_not_a_brain():
    class Half:
        name = "half"

        def decide(self, views):  # no arrivals, session_value, end_sessions
            raise NotImplementedError

    assert not isinstance(Half(), Brain)
    with pytest.raises(AssertionError, match="a Brain needs name, arrivals, decide"):
        check_brain(lambda data, ctx: Half())


# ------------------------------------------------------------------------------- backends


def test_check_backend_passes_the_fake_backend_and_it_records_requests():
    fake = FakeBackend(lambda req: {"colour": "red", "count": 2})
    check_backend(fake)
    assert len(fake.requests) == 4  # check_backend's batch
    assert fake.requests[2].max_tokens == 1
    res = fake.complete(fake.requests[:1])[0]
    assert res.ok and res.parsed == {"colour": "red", "count": 2}
    scripted = FakeBackend(["plain", ChatResult(error="boom", error_kind=ErrorKind.TIMEOUT)])
    first, second, third = scripted.complete(fake.requests[1:4])
    assert first.text == "plain" and second.error_kind is ErrorKind.TIMEOUT
    assert third.text == "plain"  # the script cycles


def _json(request):
    return {"colour": "red", "count": 1} if request.json_schema else None


class _Reversed(FakeBackend):
    def complete(self, requests):
        return super().complete(requests)[::-1]


class _Raising(FakeBackend):
    def complete(self, requests):
        if any(r.max_tokens == 1 for r in requests):
            raise RuntimeError("cannot fit the answer")
        return super().complete(requests)


class _Untyped(FakeBackend):
    def complete(self, requests):
        return [ChatResult(error="it failed", error_kind="oops") for _ in requests]


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (_Reversed(lambda req: _json(req) or "hi there friend"), "out of request order"),
        (_Raising(lambda req: "ok"), "complete\\(\\) raised RuntimeError"),
        (_Untyped(lambda req: "ok"), "typed error_kind"),
    ],
)
def test_check_backend_names_the_broken_promise(backend, message):
    with pytest.raises(AssertionError, match=message):
        check_backend(backend)


def _openai(status: int):
    httpx2 = pytest.importorskip("httpx2")
    from simrec.llm.openai_backend import OpenAIBackend

    seen = []

    def handler(request):
        seen.append(request)
        return httpx2.Response(status, json={"error": {"message": "no"}})

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    backend = OpenAIBackend(
        "m", base_url="http://127.0.0.1:9/v1", http_client=client, max_retries=0, timeout=2.0
    )
    return backend, seen


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, ErrorKind.SERVER), (401, ErrorKind.AUTH), (429, ErrorKind.RATE_LIMIT)],
)
def test_openai_backend_failures_come_back_typed(status, kind):
    backend, seen = _openai(status)
    with backend:
        check_backend(backend)  # every request fails, none raises
        results = backend.complete(_one_request())
    assert seen and all(r.error_kind is kind and r.status == status for r in results)


def _one_request():
    from simrec.llm.base import ChatRequest

    return [ChatRequest(({"role": "user", "content": "hi"},), max_tokens=5)]


def test_openai_backend_keeps_one_client_across_batches():
    backend, _ = _openai(500)
    with backend:
        backend.complete(_one_request())
        client = backend._clients[0]
        backend.complete(_one_request())
        assert backend._clients[0] is client is not None
    assert backend._clients == [None]  # closed with the backend


@pytest.mark.slow
def test_check_backend_passes_the_llama_cpp_server(llama_server):
    from simrec.llm.openai_backend import OpenAIBackend

    with OpenAIBackend("smollm2", base_url=llama_server, concurrency=2, timeout=120) as b:
        check_backend(b)


# ----------------------------------------------------------------------------- augmenters


@pytest.mark.parametrize(
    "augmenter",
    [
        ItemEnricher(),
        ProfileWriter(),
        InteractionAugmenter(build.as_config({"seed": 0}), candidates=20, merge=True),
    ],
    ids=["items", "profiles", "interactions"],
)
def test_check_augmenter_passes_the_built_in_augmenters(augmenter):
    result = check_augmenter(augmenter)
    assert result.provenance["sources"]


class _Leaky:
    """Counts every interaction of each item, the later ones included."""

    kind = "leaky"
    params: dict = {}

    def __init__(self, respect_cutoff: bool):
        self.respect_cutoff = respect_cutoff

    def build(self, data, cutoff):
        log = data.interactions
        if self.respect_cutoff:
            log = log.take(visible(log, cutoff))
        counts = np.bincount(log.item, minlength=data.catalog.n_items)
        table = pa.table({"item": np.arange(counts.size), "count": counts})
        return AugmentResult({"counts": table}, {"items": int(counts.size)}, {"sources": ["log"]})


def test_check_augmenter_catches_leakage_past_the_cutoff():
    check_augmenter(_Leaky(respect_cutoff=True))
    with pytest.raises(AssertionError, match="leaked"):
        check_augmenter(_Leaky(respect_cutoff=False))


def test_contract_world_is_small_and_deterministic():
    a, b = contract_world(seed=1), contract_world(seed=1)
    assert a.interactions.n_users == b.interactions.n_users
    np.testing.assert_array_equal(a.interactions.item, b.interactions.item)

"""Building the conversational recommender a spec names (``--crs``): the built-in baseline,
an LLM-driven one, or a class of the user's. The contract is
:class:`simrec.conversation.dialogue.ConversationalRecommender`."""

from __future__ import annotations

from simrec.conversation.builtin import BuiltinCRS
from simrec.environments.base import resolve_class
from simrec.errors import ConfigError


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

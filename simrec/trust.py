"""What simrec takes from a run directory, and what it takes only from the person running it.

A run directory may come from anywhere (a colleague, a download, a shared drive), so the config
saved in it (``_state/config.json``, ``manifest.json``) is data, not instructions:

* a ``package.module:ClassName`` policy in it is imported (which runs code) only when the same
  name is passed on this command line (``--policy`` / ``allow_import=``);
* the LLM endpoint, the environment variable holding its key and the response-cache file come
  from this command line or the defaults, never from the saved config;
* secrets are not written: URLs lose their user info and query, error texts lose anything that
  looks like a key or a bearer token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from simrec.config import LLMConfig, RunConfig, validate_config
from simrec.errors import InputError

_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-.~+/=]{6,}"
    r"|(?i:(?:api[_-]?key|token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{4,})"
)


def redact(text: str | None) -> str | None:
    """``text`` with API keys, bearer tokens and ``key=value`` secrets replaced.

    >>> redact("401: Incorrect API key provided: sk-abc123456789. Bearer xyz.123456")
    '401: Incorrect API key provided: [redacted]. [redacted]'
    """
    if text is None:
        return None
    return _SECRET.sub("[redacted]", text)


def redact_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (where credentials hide).

    >>> redact_url("http://me:pw@host:8080/v1?api_key=sk-1#x")
    'http://host:8080/v1'
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "[unparseable url]"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_openai_endpoint(base_url: str | None) -> bool:
    """Whether ``base_url`` is OpenAI's own API (None: the client's default, which is)."""
    if base_url is None:
        return True
    try:
        parts = urlsplit(base_url)
    except ValueError:
        return False
    return parts.scheme == "https" and parts.hostname == "api.openai.com"


def config_from_run_dir(
    raw: dict,
    source: str,
    *,
    allow_import: Iterable[str] = (),
    base_url: str | None = None,
    api_key_env: str | None = None,
    cache: str | None = LLMConfig().cache,
) -> RunConfig:
    """The config saved in a run directory (``source`` names the file), made safe to act on:
    its policy imports only a class named in ``allow_import``; the LLM endpoint, key variable
    and cache are the caller's. A saved run that talked to a server needs ``base_url`` again."""
    cfg = validate_config(raw, source)
    allowed = set(allow_import)
    name = cfg.policy.name
    if ":" in name and name not in allowed:
        raise InputError(
            f"{source}: policy.name is {name!r}, a class that would be imported and run from a "
            f"name found only in the run directory; if you trust it, pass --policy {name} on "
            f"the command line"
        )
    llm = cfg.llm
    saved_url = llm.base_url
    uses_server = cfg.brain.name in ("llm", "hybrid") and llm.backend.startswith("openai:")
    if uses_server and saved_url is not None and base_url is None:
        raise InputError(
            f"{source}: the run's LLM ran on a server ({redact_url(saved_url)}); simrec does not "
            f"take endpoints from a run directory: pass --base-url again"
        )
    llm.base_url = base_url
    llm.api_key_env = api_key_env
    llm.cache = cache
    return cfg

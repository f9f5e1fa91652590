"""Fixtures that write small but real files in each supported format."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from simrec.config import SyntheticWorldConfig
from simrec.data import make_world
from simrec.data.loaders import ML100K_GENRES

if TYPE_CHECKING:
    import httpx2

GENRES_100K = ML100K_GENRES

# nothing may reach the network: the Hugging Face libraries stay offline in every test
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_world():
    """A small synthetic dataset (120 users, 80 items) whose log the format writers export."""
    return make_world(SyntheticWorldConfig(users=120, items=80, interactions_per_user=15), seed=3)


def _titles(world) -> list[str]:
    # non-ASCII titles exercise the encodings (Latin-1 for 100k/1m, UTF-8 for latest)
    return [
        t.replace("The ", "Thé ", 1) if i % 7 == 0 else t
        for i, t in enumerate(world.catalog.titles)
    ]


def write_ml100k(world, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    log = world.interactions
    lines = [
        f"{log.user_ids[u]}\t{world.catalog.item_ids[i]}\t{int(r)}\t{t}"
        for u, i, r, t in zip(log.user, log.item, log.rating, log.timestamp, strict=True)
    ]
    (root / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
    names = world.catalog.genre_lists()
    rows = []
    for iid, title, gl in zip(world.catalog.item_ids, _titles(world), names, strict=True):
        flags = ["1" if g.replace("'s", "") in gl else "0" for g in GENRES_100K]
        rows.append("|".join([str(iid), title, "01-Jan-1995", "", "http://127.0.0.1/x", *flags]))
    (root / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    (root / "u.genre").write_text("".join(f"{g}|{j}\n" for j, g in enumerate(GENRES_100K)))
    return root


def write_recbole(world, root: Path, name: str = "tiny") -> Path:
    """RecBole atomic files NAME.inter/.item/.user/.link/.kg of ``world`` under root/NAME."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    log, cat = world.interactions, world.catalog
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [
        f"{log.user_ids[u]}\t{cat.item_ids[i]}\t{r:g}\t{t}"
        for u, i, r, t in zip(log.user, log.item, log.rating, log.timestamp, strict=True)
    ]
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [
        f"{iid}\t{title.rsplit(' (', 1)[0]}\t1995\t{' '.join(g)}"
        for iid, title, g in zip(cat.item_ids, _titles(world), cat.genre_lists(), strict=True)
    ]
    (d / f"{name}.item").write_text("\n".join(items) + "\n")
    users = ["user_id:token\tage:token"] + [f"{u}\t30" for u in log.user_ids]
    (d / f"{name}.user").write_text("\n".join(users) + "\n")
    link = ["item_id:token\tentity_id:token"] + [f"{i}\tm.{i}" for i in cat.item_ids[:10]]
    (d / f"{name}.link").write_text("\n".join(link) + "\n")
    kg = ["head_id:token\trelation_id:token\ttail_id:token", "m.1\tfilm.film.sequel\tm.2"]
    (d / f"{name}.kg").write_text("\n".join(kg) + "\n")
    return d


def write_ml1m(world, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    log = world.interactions
    lines = [
        f"{log.user_ids[u]}::{world.catalog.item_ids[i]}::{int(r)}::{t}"
        for u, i, r, t in zip(log.user, log.item, log.rating, log.timestamp, strict=True)
    ]
    (root / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = [
        f"{iid}::{title}::{'|'.join(gl)}"
        for iid, title, gl in zip(
            world.catalog.item_ids, _titles(world), world.catalog.genre_lists(), strict=True
        )
    ]
    (root / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return root


def write_mllatest(world, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    log = world.interactions
    half = (np.round(log.rating * 2) / 2 - (log.user % 2) * 0.5).clip(0.5, 5.0)  # half stars
    lines = ["userId,movieId,rating,timestamp"] + [
        f"{log.user_ids[u]},{world.catalog.item_ids[i]},{r:.1f},{t}"
        for u, i, r, t in zip(log.user, log.item, half, log.timestamp, strict=True)
    ]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    movies = ["movieId,title,genres"] + [
        f'{iid},"{title}, Part {iid}",{"|".join(gl) or "(no genres listed)"}'
        for iid, title, gl in zip(
            world.catalog.item_ids, _titles(world), world.catalog.genre_lists(), strict=True
        )
    ]
    # as in the real file: embedded doubled quotes, plain unquoted titles, an unused movie
    genres = ["|".join(gl) or "(no genres listed)" for gl in world.catalog.genre_lists()[:2]]
    movies[1] = f'{world.catalog.item_ids[0]},"""Great Performances"" Cats (1998)",{genres[0]}'
    movies[2] = f"{world.catalog.item_ids[1]},Heat (1995),{genres[1]}"
    movies.append("999001,Never Rated (2020),(no genres listed)")
    (root / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    return root


def write_table_csv(world, path: Path) -> Path:
    log = world.interactions
    lines = ["uid,iid,stars,when"] + [
        f"u{log.user_ids[u]},m{world.catalog.item_ids[i]},{int(r)},{t}"
        for u, i, r, t in zip(log.user, log.item, log.rating, log.timestamp, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ml100k(tiny_world, tmp_path) -> Path:
    return write_ml100k(tiny_world, tmp_path / "ml-100k")


@pytest.fixture
def ml1m(tiny_world, tmp_path) -> Path:
    return write_ml1m(tiny_world, tmp_path / "ml-1m")


@pytest.fixture
def mllatest(tiny_world, tmp_path) -> Path:
    return write_mllatest(tiny_world, tmp_path / "ml-latest-small")


@pytest.fixture
def table_csv(tiny_world, tmp_path) -> Path:
    return write_table_csv(tiny_world, tmp_path / "log.csv")


def small_config(out: Path, **sim) -> dict:
    """A fast config over a small synthetic world."""
    return {
        "seed": 11,
        "data": {"synthetic": {"users": 300, "items": 200, "interactions_per_user": 20}},
        "simulation": {"ticks": 6, "checkpoint_every": 2, **sim},
        "brain": {"taste_dim": 8},
        "output": {"dir": str(out), "row_group_size": 500},
    }


# ---------------------------------------------------------------------------- LLM server


def llm_config(out, cache, **llm):
    """A small LLM-brain run config (40 users, 60 items, two ticks) caching to ``cache``."""
    cfg = small_config(out, ticks=2, page_size=4, max_pages=2)
    cfg["data"]["synthetic"].update(users=40, items=60)
    cfg["population"] = {"users": 24}
    cfg["brain"]["name"] = "llm"
    cfg["llm"] = {"cache": str(cache), "max_tokens": 120, "interview_fraction": 0.0, **llm}
    return cfg


def completion_body(
    content: str, finish: str = "stop", prompt_tokens: int = 50, completion_tokens: int = 20
) -> dict:
    """The JSON body of an OpenAI chat-completion response carrying ``content``."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def completion(
    content: str, finish: str = "stop", prompt_tokens: int = 50, completion_tokens: int = 20
) -> httpx2.Response:
    """An HTTP 200 response of :func:`completion_body`."""
    import httpx2

    body = completion_body(content, finish, prompt_tokens, completion_tokens)
    return httpx2.Response(200, json=body)


def serve(monkeypatch, handler) -> None:
    """Route the run's openai backend to ``handler`` through httpx2.MockTransport (the HTTP
    layer below the client; everything above it is the real code)."""
    import httpx2

    import simrec.llm as llm_module

    real = llm_module.make_backend

    def routed(request):
        if request.url.path.endswith("/models"):  # a server without a model list
            return httpx2.Response(404, json={"error": "not found"})
        return handler(request)

    def with_mock_transport(spec, **kw):
        kw["http_client"] = httpx2.AsyncClient(transport=httpx2.MockTransport(routed))
        return real(spec, **kw)

    monkeypatch.setattr(llm_module, "make_backend", with_mock_transport)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m llama_cpp.server`` with the embedded SmolLM2 model on a free loopback port,
    logging to ``log``; returns the process and its ``/v1`` URL once it answers."""
    import httpx2

    from simrec.llm.local import smollm2_path

    port = _free_port()
    with open(log, "wb") as sink:  # a file, not a pipe: the server logs a lot
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_path()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "smollm2",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx2.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx2.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` with the embedded SmolLM2 model on a loopback port."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("httpx2")
    proc, url = start_llama_server(tmp_path_factory.mktemp("llama") / "server.log")
    yield url
    proc.terminate()
    proc.wait(timeout=30)

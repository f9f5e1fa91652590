"""Social influence: a networkx graph over agents, shares, and the signal friends' shares leave.

After each tick, every agent who watched an item and rated it at least ``share_threshold`` (on
the 0..1 normalised scale; any watch counts in logs without ratings) shares it with probability
``share_probability``. A share adds 1 to the signal of that item for each of the sharer's
friends; the signal decays by ``signal_decay`` per tick. A brain sees ``1 - exp(-signal)`` in
[0, 1) for each item on a page and weighs it by the persona's conformity.

Graphs: ``watts-strogatz`` (mean degree ``degree``, rewiring ``rewire``), ``barabasi-albert``
(``degree // 2`` edges per new node), or ``edges``: a file of ``user user`` lines (whitespace,
comma or tab separated; ``#`` comments) naming users by their ids in the data; every agent
simulating one user is linked to every agent simulating the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.sparse as sp

from simrec.agents.persona import Personas
from simrec.config import SocialConfig
from simrec.data import Dataset
from simrec.data.dataset import file_sha256
from simrec.errors import ConfigError, InputError
from simrec.rng import Streams, derive_seed

_PRUNE = 1e-3  # signal below this is dropped, which keeps the matrix sparse


@dataclass
class SocialGraph:
    """The graph (networkx, nodes = agent ids) and its adjacency as CSR (n_agents, n_agents)."""

    graph: nx.Graph
    adjacency: sp.csr_matrix
    source: str
    dropped_edges: int = 0
    file_sha256: str | None = None

    def summary(self) -> dict:
        degrees = np.diff(self.adjacency.indptr)
        return {
            "graph": self.source,
            "nodes": int(self.adjacency.shape[0]),
            "edges": int(self.adjacency.nnz // 2),
            "mean_degree": float(degrees.mean()) if degrees.size else 0.0,
            "isolated": int((degrees == 0).sum()),
            "dropped_edges": self.dropped_edges,
        }


def build_graph(cfg: SocialConfig, data: Dataset, personas: Personas, seed: int) -> SocialGraph:
    """The configured graph over ``len(personas)`` agents."""
    n = len(personas)
    s = derive_seed(seed, "social-graph")
    if cfg.graph == "watts-strogatz":
        if not 2 <= cfg.degree < n:
            raise ConfigError(
                f"social.degree: watts-strogatz needs 2 <= degree < agents ({n}), got {cfg.degree}"
            )
        g = nx.watts_strogatz_graph(n, cfg.degree, cfg.rewire, seed=s)
        return _from_nx(g, n, "watts-strogatz")
    if cfg.graph == "barabasi-albert":
        m = max(1, cfg.degree // 2)
        if m >= n:
            raise ConfigError(
                f"social.degree: barabasi-albert needs degree // 2 < agents ({n}), got {cfg.degree}"
            )
        return _from_nx(nx.barabasi_albert_graph(n, m, seed=s), n, "barabasi-albert")
    if cfg.graph == "edges":
        if cfg.path is None:
            raise ConfigError("social.path: expected an edge list file for graph 'edges', got none")
        return read_edge_list(Path(cfg.path), data, personas.source_user)
    raise ConfigError(f"social.graph: unknown graph {cfg.graph!r}")


def _from_nx(g: nx.Graph, n: int, source: str, **extra) -> SocialGraph:
    adj = nx.to_scipy_sparse_array(g, nodelist=range(n), dtype=np.float32, format="csr")
    adj = sp.csr_matrix(adj)
    adj.data[:] = 1.0
    adj.sort_indices()
    return SocialGraph(g, adj, source, **extra)


_SPLIT = re.compile(r"[\s,]+")


def read_edge_list(path: Path, data: Dataset, source_user: np.ndarray) -> SocialGraph:
    """Edges between data users, one ``a b`` pair per line -> a graph over agents, each of which
    simulates the data user ``source_user[agent]`` (agents of one user are all linked). A first
    line whose two fields are both not users of the data is a header (``userID friendID``) and
    is skipped.

    Raises InputError naming the file and line for a line without exactly two ids, a user not
    in the data, or a self loop. Edges whose users no agent simulates are dropped and counted.
    """
    if not path.is_file():
        raise InputError(f"{path}: edge list file not found")
    ids = data.interactions.user_ids
    index = {str(u): i for i, u in enumerate(ids.tolist())}
    agents_of: dict[int, list[int]] = {}
    for agent, src in enumerate(np.asarray(source_user).tolist()):
        agents_of.setdefault(src, []).append(agent)
    n_agents = len(source_user)
    g = nx.Graph()
    g.add_nodes_from(range(n_agents))
    dropped = 0
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: expected UTF-8 text, found byte {err.object[err.start]:#04x} at offset "
            f"{err.start}"
        ) from None
    n_edges, first = 0, True
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        if len(fields) != 2:
            raise InputError(
                f"{path}: line {lineno}: expected two user ids (an edge), got {raw.strip()!r}"
            )
        a, b = fields
        header, first = first and a not in index and b not in index, False
        if header:
            continue
        for u in (a, b):
            if u not in index:
                raise InputError(
                    f"{path}: line {lineno}: user '{u}' is not a user of the data "
                    f"({len(index)} users, e.g. {', '.join(map(str, ids[:3].tolist()))})"
                )
        if a == b:
            raise InputError(f"{path}: line {lineno}: self loop on user '{a}'")
        n_edges += 1
        left, right = agents_of.get(index[a], []), agents_of.get(index[b], [])
        if not left or not right:
            dropped += 1
            continue
        g.add_edges_from((x, y) for x in left for y in right if x != y)
    if n_edges == 0:
        raise InputError(f"{path}: expected at least one edge, found none")
    return _from_nx(g, n_agents, "edges", dropped_edges=dropped, file_sha256=file_sha256(str(path)))


class SocialSignal:
    """Friends' shares per (agent, item), decaying each tick. ``signal``: (n_agents, n_items)
    float32 CSR of accumulated share counts."""

    def __init__(self, graph: SocialGraph, cfg: SocialConfig, n_items: int) -> None:
        self.graph, self.cfg = graph, cfg
        n = graph.adjacency.shape[0]
        self.signal = sp.csr_matrix((n, n_items), dtype=np.float32)

    def lookup(self, agents: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The signal in [0, 1) for each slot. agents: (n,), items: (n, k) (-1 = none) -> (n, k)
        float32."""
        out = np.zeros(items.shape, np.float32)
        if self.signal.nnz == 0:
            return out
        sub = self.signal[agents]
        if sub.nnz == 0:
            return out
        n_items = self.signal.shape[1]
        rows = np.repeat(np.arange(agents.size, dtype=np.int64), np.diff(sub.indptr))
        keys = rows * n_items + sub.indices
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], sub.data[order]
        want = np.arange(agents.size, dtype=np.int64)[:, None] * n_items + items
        pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
        hit = (items >= 0) & (keys[pos] == want)
        out[hit] = -np.expm1(-vals[pos[hit]])
        return out

    def share(
        self,
        agents: np.ndarray,
        items: np.ndarray,
        value: np.ndarray,
        streams: Streams,
        tick: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decide this tick's shares among watched (agent, item) pairs with normalised ratings
        ``value`` (NaN = unrated, counts as liked), update the signal, and return the shares:
        sharer (s,), item (s,) sorted by (sharer, item), and recipients (s,) friends reached."""
        c = self.cfg
        n_items = self.signal.shape[1]
        liked = np.isnan(value) | (value >= c.share_threshold)
        a, i = agents[liked].astype(np.int64), items[liked].astype(np.int64)
        keys = a * n_items + i  # one watch per (agent, item) per tick: a unique key
        u = streams.uniform("share", keys, tick, 0, 1)[:, 0]
        go = u < c.share_probability
        keys = np.sort(keys[go])
        sharer, item = keys // n_items, keys % n_items
        adj = self.graph.adjacency
        decayed = self.signal * np.float32(c.signal_decay)
        if keys.size:
            shares = sp.csr_matrix(
                (np.ones(keys.size, np.float32), (sharer, item)), shape=self.signal.shape
            )
            decayed = decayed + (adj @ shares)  # friend f gets +1 per friend's share
        decayed = sp.csr_matrix(decayed)
        decayed.data[decayed.data < _PRUNE] = 0
        decayed.eliminate_zeros()
        decayed.sort_indices()
        self.signal = decayed.astype(np.float32)
        recipients = np.diff(adj.indptr)[sharer].astype(np.int32)
        return sharer, item, recipients

    def state(self) -> dict[str, np.ndarray]:
        s = self.signal
        return {"social_indptr": s.indptr, "social_indices": s.indices, "social_data": s.data}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.signal = sp.csr_matrix(
            (
                state["social_data"].copy(),
                state["social_indices"].copy(),
                state["social_indptr"].copy(),
            ),
            shape=self.signal.shape,
        )

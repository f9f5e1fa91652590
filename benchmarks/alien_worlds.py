"""True worlds whose users behave unlike simrec's model, for sim-to-real checks.

Each world writes its organic log in MovieLens-100k format (``u.data``, ``u.item``,
``u.genre``), and measures the true engagement (watches per user over ``days``) of any policy:
the very same policy implementations simrec's A/B test runs (``make_policy``) serve the world's
own users, who answer by the world's own rules. simrec only ever sees the written log.
Nothing in ``simrec/`` reads this module.

* ``NestedLogitWorld``: genre nests, nested-logit choice with within-session satiation, a
  session budget, organic exposure by popularity (consideration sets), a cascade over slates.
* ``EraAttributeWorld``: tastes over eras and hand-written item attributes; marketing drives
  organic exposure (recent films with star casts); strong position bias on slates.
* ``FriendsWorld``: users in communities on a friendship graph; choices spread by contagion
  (what friends watched) more than by taste, in the log and on slates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from simrec.data.loaders import ML100K_GENRES

GENRES = ML100K_GENRES[1:]  # 18 names; the worlds use them as labels only


class AlienWorld:
    """Shared plumbing: the written log, arrivals and the engagement loop."""

    name = "world"

    def __init__(self, n_users: int, n_items: int, seed: int) -> None:
        self.n_users, self.n_items, self.seed = n_users, n_items, seed
        self.g = np.random.default_rng(seed)
        self.years = np.zeros(n_items, int)
        self.genres: list[list[str]] = []
        self.arrival = np.full(n_users, 0.3)

    # the worlds define these
    def organic_log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user, item, rating, timestamp) of the organic log."""
        raise NotImplementedError

    def start_sessions(self, users: np.ndarray, u: np.ndarray) -> dict:
        return {}

    def respond(self, users, items, page, state, u) -> tuple[np.ndarray, np.ndarray]:
        """users (n,), items (n, k) (-1 empty), uniforms u (n, k + 1) -> watched (n, k) bool,
        leave (n,) bool."""
        raise NotImplementedError

    def rating(self, users: np.ndarray, items: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def write_movielens(self, root: Path) -> Path:
        """The organic log as MovieLens-100k files under ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        users, items, ratings, ts = self.log = self.organic_log()
        order = np.lexsort((items, ts, users))
        lines = [
            f"{u + 1}\t{i + 1}\t{int(r)}\t{t}"
            for u, i, r, t in zip(
                users[order], items[order], ratings[order], ts[order], strict=True
            )
        ]
        (root / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
        names = ["unknown", *GENRES]
        rows = []
        for i in range(self.n_items):
            flags = ["1" if g in self.genres[i] else "0" for g in names]
            title = f"{self.name.title()} film {i + 1} ({self.years[i]})"
            rows.append("|".join([str(i + 1), title, f"01-Jan-{self.years[i]}", "", "", *flags]))
        (root / "u.item").write_text("\n".join(rows) + "\n", encoding="latin-1")
        (root / "u.genre").write_text("".join(f"{g}|{j}\n" for j, g in enumerate(names)))
        return root

    def consumed(self) -> np.ndarray:
        users, items, _, _ = self.log
        m = np.zeros((self.n_users, self.n_items), bool)
        m[users, items] = True
        return m

    def true_engagement(
        self, policy, days: int, k: int = 10, max_pages: int = 5, seed: int = 0
    ) -> float:
        """Watches per user over ``days`` when ``policy`` (fitted) serves this world's users.
        Draws are common to every policy: uniforms per (day, page) for every user."""
        from simrec.environments.base import PolicyRandomness
        from simrec.rng import Streams

        seen = self.consumed()
        watches = 0
        for day in range(days):
            g = np.random.default_rng([seed, self.seed, day])
            arrive = np.flatnonzero(g.random(self.n_users) < self.arrival)
            state = self.start_sessions(arrive, g.random(self.n_users)[arrive])
            shown = np.zeros((arrive.size, self.n_items), bool)
            active = np.ones(arrive.size, bool)
            for page in range(max_pages):
                rows = np.flatnonzero(active)
                if rows.size == 0:
                    break
                users = arrive[rows]
                exclude = sp.csr_matrix(seen[users] | shown[rows])
                rng = PolicyRandomness(Streams(seed), day, page)
                items = policy.recommend(users, k, exclude=exclude, rng=rng).items
                u = np.random.default_rng([seed, self.seed, day, page + 1]).random(
                    (self.n_users, k + 1)
                )[users]
                watched, leave = self.respond(users, items, page, state, u)
                r, c = np.nonzero(items >= 0)
                shown[rows[r], items[r, c]] = True
                wr, wc = np.nonzero(watched)
                seen[users[wr], items[wr, wc]] = True
                self.on_watch(users[wr], items[wr, wc])
                watches += int(watched.sum())
                active[rows[leave]] = False
        self.reset_dynamic()
        return watches / self.n_users

    def on_watch(self, users: np.ndarray, items: np.ndarray) -> None:
        """Dynamic worlds update their state after watches (default: nothing)."""

    def reset_dynamic(self) -> None:
        """Undo what ``on_watch`` changed, so every policy meets the same world."""

    def _timestamps(self, users: np.ndarray, days: np.ndarray, order: np.ndarray) -> np.ndarray:
        base = 880_000_000  # late 1997, like MovieLens-100k
        return base + days * 86400 + 3600 * 20 + order * 60


class NestedLogitWorld(AlienWorld):
    """Genre nests with nested-logit choice, satiation within a session and a session
    budget; organic exposure is a popularity-drawn consideration set."""

    name = "nested-logit"

    def __init__(self, n_users=800, n_items=1200, seed=0, n_nests=8, lam=0.5):
        super().__init__(n_users, n_items, seed)
        g = self.g
        self.nest = g.integers(0, n_nests, n_items)
        self.theta = g.dirichlet(np.full(n_nests, 0.4), n_users)
        self.quality = g.normal(0, 0.8, n_items)
        self.x, self.y = g.normal(0, 1, (n_users, 3)), g.normal(0, 0.6, (n_items, 3))
        self.lam = lam
        rank = np.argsort(np.argsort(-(self.quality * 0.5 + g.normal(0, 1, n_items))))
        self.exposure = (rank + 1.0) ** -1.1
        self.exposure /= self.exposure.sum()
        self.years = g.integers(1950, 1998, n_items)
        second = g.integers(0, len(GENRES), n_items)
        self.genres = [[GENRES[self.nest[i]], GENRES[second[i]]] for i in range(n_items)]
        self.arrival = np.clip(g.lognormal(np.log(0.25), 0.6, n_users), 0.02, 0.9)
        self.budget_mean = np.clip(g.lognormal(np.log(3.0), 0.5, n_users), 1, 12)

    def value(self, users, items):
        return self.quality[items] + np.einsum("...d,...d->...", self.x[users], self.y[items])

    def organic_log(self):
        g, rows = self.g, []
        for u in range(self.n_users):
            seen: set[int] = set()
            n_sessions = 1 + g.poisson(5)
            days = np.sort(g.integers(0, 150, n_sessions))
            for day in days:
                sat = np.ones(self.theta.shape[1])
                budget = 1 + g.poisson(self.budget_mean[u])
                cand = np.unique(g.choice(self.n_items, 40, p=self.exposure))
                cand = np.array([c for c in cand if c not in seen], int)
                for step in range(int(budget)):
                    if cand.size == 0:
                        break
                    v = self.value(np.full(cand.size, u), cand) / self.lam
                    nests = self.nest[cand]
                    iv = np.full(sat.size, -np.inf)
                    for n in np.unique(nests):
                        iv[n] = np.logaddexp.reduce(v[nests == n])
                    top = np.log(self.theta[u] * sat + 1e-12) + self.lam * iv
                    pn = np.exp(top - np.logaddexp.reduce(top))
                    n = g.choice(sat.size, p=pn)
                    inn = np.flatnonzero(nests == n)
                    pi = np.exp(v[inn] - np.logaddexp.reduce(v[inn]))
                    pick = cand[inn[g.choice(inn.size, p=pi)]]
                    rows.append((u, pick, day, step))
                    seen.add(int(pick))
                    sat[n] *= 0.5
                    cand = cand[cand != pick]
        u, i, d, o = (np.array(c) for c in zip(*rows, strict=True))
        r = self.rating(u, i, g.normal(0, 1, u.size))
        return u, i, r, self._timestamps(u, d, o)

    def rating(self, users, items, z):
        return np.clip(np.round(3.2 + 0.8 * self.value(users, items) + 0.7 * z), 1, 5)

    def start_sessions(self, users, u):
        budget = 1 + np.floor(-np.log(np.maximum(u, 1e-12)) * self.budget_mean[users])
        return {"sat": np.ones((users.size, self.theta.shape[1])), "budget": budget, "users": users}

    def respond(self, users, items, page, state, u):
        idx = np.searchsorted(state["users"], users)
        n, k = items.shape
        safe = np.maximum(items, 0)
        watched = np.zeros((n, k), bool)
        for j in range(k):  # top to bottom: examined with probability 0.9^j
            nest = self.nest[safe[:, j]]
            pref = self.theta[users, nest] * state["sat"][idx, nest] * self.theta.shape[1]
            util = self.value(users, safe[:, j]) + self.lam * np.log(pref + 1e-12) - 2.0
            w = (items[:, j] >= 0) & (u[:, j] < 0.9**j * expit(util))
            w &= state["budget"][idx] > 0
            watched[:, j] = w
            state["budget"][idx[w]] -= 1
            state["sat"][idx[w], nest[w]] *= 0.5
        leave = (state["budget"][idx] <= 0) | (u[:, k] < np.where(watched.any(axis=1), 0.25, 0.6))
        return watched, leave


class EraAttributeWorld(AlienWorld):
    """Tastes over eras and eight hand-written attributes; marketing (recent films, star
    casts) drives organic exposure; slates are seen with a strong position bias."""

    name = "era-attribute"
    ATTRIBUTES = (
        "Animation",
        "Action",
        "Romance",
        "Comedy",
        "Horror",
        "Musical",
        "War",
        "Documentary",
    )

    def __init__(self, n_users=800, n_items=1200, seed=1):
        super().__init__(n_users, n_items, seed)
        g = self.g
        self.era = np.minimum(g.beta(3, 1.5, n_items) * 8, 7.999).astype(int)
        self.years = 1940 + 10 * self.era + g.integers(0, 10, n_items)
        rates = np.array([0.08, 0.3, 0.25, 0.3, 0.1, 0.06, 0.08, 0.04])
        self.attr = (g.random((n_items, rates.size)) < rates).astype(float)
        self.star = (g.random(n_items) < 0.2).astype(float)
        self.genres = [
            [a for a, f in zip(self.ATTRIBUTES, row, strict=True) if f] or ["Drama"]
            for row in self.attr
        ]
        self.centre = g.normal(4.5, 1.8, n_users)
        self.width = g.uniform(0.8, 2.5, n_users)
        mean_w = np.array([-0.3, 0.2, 0.0, 0.3, -0.6, -0.4, -0.2, -0.5])
        self.w = mean_w + g.normal(0, 1.0, (n_users, rates.size))
        self.marketing = np.exp(0.35 * self.era + 1.2 * self.star)
        self.marketing /= self.marketing.sum()
        self.arrival = np.clip(g.lognormal(np.log(0.2), 0.7, n_users), 0.02, 0.9)
        self.activity = np.clip(g.lognormal(np.log(35), 0.6, n_users), 5, 200).astype(int)

    def utility(self, users, items):
        era = -0.5 * ((self.era[items] - self.centre[users]) / self.width[users]) ** 2
        attrs = np.einsum("...d,...d->...", self.w[users], self.attr[items])
        return era + attrs + 0.3 * self.star[items]

    def organic_log(self):
        g, rows = self.g, []
        for u in range(self.n_users):
            draws = g.choice(self.n_items, 6 * self.activity[u], p=self.marketing)
            draws = draws[np.sort(np.unique(draws, return_index=True)[1])]
            ok = g.random(draws.size) < expit(self.utility(np.full(draws.size, u), draws) - 0.3)
            picks = draws[ok][: self.activity[u]]
            days = np.sort(g.integers(0, 200, picks.size)) // 3 * 3
            rows += [(u, i, d, o) for o, (i, d) in enumerate(zip(picks, days, strict=True))]
        u, i, d, o = (np.array(c) for c in zip(*rows, strict=True))
        r = self.rating(u, i, g.normal(0, 1, u.size))
        return u, i, r, self._timestamps(u, d, o)

    def rating(self, users, items, z):
        return np.clip(np.round(3.0 + 0.6 * self.utility(users, items) + 0.8 * z), 1, 5)

    def respond(self, users, items, page, state, u):
        n, k = items.shape
        exam = (np.arange(1, k + 1) + page * k * 0.2) ** -1.5
        util = self.utility(users[:, None], np.maximum(items, 0))
        watched = (items >= 0) & (u[:, :k] < exam * expit(2.0 * (util - 1.0)))
        return watched, u[:, k] < 0.45


class FriendsWorld(AlienWorld):
    """Communities on a friendship graph; what friends watched spreads (contagion) in the log
    and on slates; individual taste is weak."""

    name = "friends"

    def __init__(self, n_users=800, n_items=1200, seed=2, n_communities=15):
        super().__init__(n_users, n_items, seed)
        g = self.g
        self.community = g.integers(0, n_communities, n_users)
        friends = []
        for u in range(n_users):
            same = np.flatnonzero(self.community == self.community[u])
            f = set(g.choice(same, min(8, same.size), replace=False).tolist())
            f |= set(g.integers(0, n_users, 2).tolist())
            f.discard(u)
            friends.append(sorted(f))
        rows = np.repeat(np.arange(n_users), [len(f) for f in friends])
        cols = np.concatenate([np.array(f, int) for f in friends])
        adj = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_users, n_users))
        self.adj = ((adj + adj.T) > 0).astype(np.float64).tocsr()
        z = g.normal(0, 1, (n_communities, 3))
        self.x = z[self.community] + g.normal(0, 0.7, (n_users, 3))
        self.y = g.normal(0, 0.5, (n_items, 3))
        self.pop = g.pareto(1.2, n_items) + 1
        self.pop /= self.pop.sum()
        self.years = g.integers(1960, 1998, n_items)
        self.genres = [list(g.choice(GENRES, 2, replace=False)) for _ in range(n_items)]
        self.arrival = np.clip(g.lognormal(np.log(0.25), 0.5, n_users), 0.02, 0.9)
        self.friend_watches = np.zeros((n_users, n_items))

    def taste(self, users, items):
        return np.einsum("...d,...d->...", self.x[users], self.y[items])

    def organic_log(self):
        g, rows = self.g, []
        watched = np.zeros((self.n_users, self.n_items), bool)
        for day in range(120):
            active = np.flatnonzero(g.random(self.n_users) < 0.12)
            influence = self.adj[active] @ watched.astype(np.float64)
            for r, u in enumerate(active):
                for o in range(1 + g.poisson(1.5)):
                    if g.random() < 0.65 and influence[r].sum() > 0:
                        p = influence[r] * ~watched[u]
                        if p.sum() == 0:
                            continue
                        i = g.choice(self.n_items, p=p / p.sum())
                    else:
                        cand = g.choice(self.n_items, 20, p=self.pop)
                        cand = cand[~watched[u, cand]]
                        if cand.size == 0:
                            continue
                        t = self.taste(np.full(cand.size, u), cand)
                        i = cand[np.argmax(t + g.gumbel(size=cand.size))]
                    watched[u, i] = True
                    rows.append((u, i, day, o))
        u, i, d, o = (np.array(c) for c in zip(*rows, strict=True))
        missing = np.setdiff1d(np.arange(self.n_users), u)  # everyone has a first watch
        if missing.size:
            first = g.choice(self.n_items, missing.size, p=self.pop)
            u, i = np.r_[u, missing], np.r_[i, first]
            d, o = np.r_[d, np.full(missing.size, 119)], np.r_[o, np.zeros(missing.size, int)]
        self.base_friend_watches = (
            self.adj
            @ sp.csr_matrix((np.ones(u.size), (u, i)), shape=(self.n_users, self.n_items)).toarray()
        )
        self.friend_watches = self.base_friend_watches.copy()
        r = self.rating(u, i, g.normal(0, 1, u.size))
        return u, i, r, self._timestamps(u, d, o)

    def rating(self, users, items, z):
        return np.clip(np.round(3.4 + 0.7 * self.taste(users, items) + 0.8 * z), 1, 5)

    def respond(self, users, items, page, state, u):
        n, k = items.shape
        safe = np.maximum(items, 0)
        social = np.log1p(self.friend_watches[users[:, None], safe])
        p = expit(0.8 * self.taste(users[:, None], safe) + 1.3 * social - 2.6)
        exam = 0.9 * 0.85 ** np.arange(k)
        watched = (items >= 0) & (u[:, :k] < exam * p)
        leave = u[:, k] < np.where(watched.any(axis=1), 0.4, 0.6)
        return watched, leave

    def on_watch(self, users, items):
        for u, i in zip(users.tolist(), items.tolist(), strict=True):
            nb = self.adj.indices[self.adj.indptr[u] : self.adj.indptr[u + 1]]
            self.friend_watches[nb, i] += 1

    def reset_dynamic(self):
        self.friend_watches = self.base_friend_watches.copy()


WORLDS = {w.name: w for w in (NestedLogitWorld, EraAttributeWorld, FriendsWorld)}

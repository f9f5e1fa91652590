"""A Gymnasium environment where the recommender is the RL agent (optional extra ``gym``).

One episode is one session of one simulated user, drawn from the calibrated population at
``reset``. Each step the agent shows a slate (``action``: ``k`` item indices), the user's brain
decides what it examines, watches and rates and whether it leaves; the reward is the number of
watched items (``reward="clicks"``) or the sum of their ratings normalised to [0, 1]
(``reward="ratings"``). The episode ends when the user leaves or after ``max_pages`` pages.

Observation (a ``Dict``):

* ``history``: (H,) int64, the user's latest watched items, newest first, -1 padded;
* ``history_ratings``: (H,) float32, their normalised ratings (0 where none);
* ``persona``: (3,) float32, activity, conformity and diversity traits in [0, 1];
* ``page``: the page number within the session.

Repeated items within a slate are shown once (later copies are empty slots).

>>> env = RecEnv({"data": {"synthetic": {"users": 50, "items": 40}}, "brain": {"taste_dim": 4}})
>>> obs, info = env.reset(seed=1)
>>> obs["history"].shape, env.action_space.shape
((20,), (10,))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simrec.agents.brains.base import PageBatch
from simrec.config import RunConfig
from simrec.errors import ConfigError
from simrec.rng import Streams


class RecEnv(gym.Env):
    """Gymnasium environment over a calibrated simrec population (module docstring).

    ``config``: a RunConfig, mapping or YAML/TOML path (data, population, brain and
    ``simulation.page_size``/``max_pages`` are used); ``history``: H, the observed history length.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: RunConfig | dict | str | Path | None = None,
        *,
        reward: Literal["clicks", "ratings"] = "clicks",
        history: int = 20,
    ) -> None:
        from simrec import build

        if reward not in ("clicks", "ratings"):
            raise ConfigError(f"reward: expected 'clicks' or 'ratings', got {reward!r}")
        if history < 1:
            raise ConfigError(f"history: expected a positive integer, got {history!r}")
        cfg = build.as_config(config)
        self.cfg, self.reward_kind, self.history_len = cfg, reward, int(history)
        data = build.load_data(cfg)
        self.data = data
        self.brain, self.personas = build.calibrate(cfg, data)
        self.k, self.max_pages = cfg.simulation.page_size, cfg.simulation.max_pages
        n_items = data.catalog.n_items
        self.n_items = n_items
        self.action_space = spaces.MultiDiscrete(np.full(self.k, n_items, np.int64))
        self.observation_space = spaces.Dict(
            {
                "history": spaces.Box(-1, n_items - 1, (self.history_len,), np.int64),
                "history_ratings": spaces.Box(0.0, 1.0, (self.history_len,), np.float32),
                "persona": spaces.Box(0.0, 1.0, (3,), np.float32),
                "page": spaces.Discrete(self.max_pages),
            }
        )
        # each user's seed history, newest first
        log = data.interactions
        order = np.lexsort((-np.arange(len(log)), -log.timestamp, log.user))
        self._seed_items = log.item[order].astype(np.int64)
        self._seed_ratings = data.scale.normalise(
            np.nan_to_num(log.rating[order].astype(np.float64), nan=data.scale.high)
        )
        self._seed_start = np.searchsorted(log.user[order], np.arange(log.n_users + 1))
        self._agent = 0
        self._page = 0
        self._history: list[int] = []
        self._ratings: list[float] = []

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = len(self.personas)
        if options and "user" in options:  # a chosen user; otherwise one drawn at random
            self._agent = int(options["user"])
        else:
            self._agent = int(self.np_random.integers(n))
        if not 0 <= self._agent < n:
            raise ValueError(f"options['user']: expected 0..{n - 1}, got {self._agent}")
        # the user's draws for this episode: a fresh counter-based stream from np_random
        self.brain.reseed(Streams(int(self.np_random.integers(2**62))))
        self._page = 0
        src = int(self.personas.source_user[self._agent])
        lo, hi = self._seed_start[src], self._seed_start[src + 1]
        take = min(hi - lo, self.history_len)
        self._history = self._seed_items[lo : lo + take].tolist()
        self._ratings = self._seed_ratings[lo : lo + take].tolist()
        return self._observation(), {"user": self._agent}

    def step(self, action):
        items = np.asarray(action, np.int64).reshape(1, self.k).copy()
        if ((items < 0) | (items >= self.n_items)).any():
            raise ValueError(f"action: expected {self.k} item indices in 0..{self.n_items - 1}")
        seen: set[int] = set()
        for j, item in enumerate(items[0].tolist()):  # show each item once
            if item in seen:
                items[0, j] = -1
            seen.add(item)
        batch = PageBatch(
            np.array([self._agent], np.int64),
            items,
            np.zeros(items.shape, np.float32),
            self._page,
            0,  # the episode's stream is fresh (reset), so draws are keyed by page alone
        )
        d = self.brain.decide(batch)
        clicked = d.clicked[0]
        rating = d.rating[0]
        norm = np.where(
            np.isfinite(rating),
            self.data.scale.normalise(np.nan_to_num(rating, nan=self.data.scale.low)),
            1.0,
        )
        if self.reward_kind == "clicks":
            reward = float(clicked.sum())
        else:
            reward = float(np.where(clicked, norm, 0.0).sum())
        for j in np.flatnonzero(clicked):
            self._history.insert(0, int(items[0, j]))
            self._ratings.insert(0, float(norm[j]))
        del self._history[self.history_len :], self._ratings[self.history_len :]
        terminated = bool(d.leave[0])  # the user left
        truncated = not terminated and self._page >= self.max_pages - 1  # the page cap
        self._page = min(self._page + 1, self.max_pages - 1)
        info = {
            "user": self._agent,
            "examined": d.examined[0].copy(),
            "clicked": clicked.copy(),
            "rated": np.isfinite(rating),
            "rating": np.nan_to_num(rating, nan=0.0),  # 0 where not rated (see "rated")
        }
        return self._observation(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ helpers

    def _observation(self) -> dict[str, Any]:
        h = np.full(self.history_len, -1, np.int64)
        r = np.zeros(self.history_len, np.float32)
        h[: len(self._history)] = self._history
        r[: len(self._ratings)] = self._ratings
        a = self._agent
        p = self.personas
        persona = np.array([p.activity[a], p.conformity[a], p.diversity[a]], np.float32)
        persona = np.clip(persona, 0.0, 1.0)
        r = np.clip(r, 0.0, 1.0)
        return {"history": h, "history_ratings": r, "persona": persona, "page": self._page}

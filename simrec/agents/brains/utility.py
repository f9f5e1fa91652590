"""The statistical brain: a calibrated choice model, vectorised over every agent on a page.

Per page view with ``k`` slots:

* examination: position-based, ``P(examine position j) = first_examination * j ** -position_decay``;
* watch (click) given examined: ``sigmoid(w0 + w_aff * z_affinity + w_genre * z_genre_taste
  + w_q * z_quality + (w_p + w_conf * conformity - w_nov * diversity) * z_pop
  + social_weight * conformity * social)``: the taste model's affinity, the user's genre taste
  (leave-one-out in calibration), the item's damped rating bias and its popularity, weighted by
  logistic regression of the log's interactions against items drawn from the log's *exposure*
  (in proportion to ``(interactions + 1) ** brain.exposure``), so that what made people come
  across an item is not taken for taste: inside the simulation, exposure is the slate. ``w0``
  is prior-corrected so that an exposure-drawn examined item is watched at the log's density;
* rating of a watched item: the fitted biased-MF expectation plus residual noise, cut into
  the scale at thresholds that reproduce the log's rating histogram (an ordinal link);
* leaving after the page (``brain.session_length``): ``log`` (the default) ends a session after
  each page with probability ``e_k * w_u / session_items``, so that a session lasts a geometric
  number of pages whose mean is what it takes a user shown items drawn from the log's exposure
  (``e_k`` items examined per page of ``k``, each watched with the user's mean probability
  ``w_u``) to consume as many items as their source user's sessions in the log hold: a better
  recommender gets more consumed per session than the log, a worse one less; ``fatigue``
  leaves with ``sigmoid(leave_base + fatigue * page - w_sat * page_value)``;
* coming back next tick: the persona's arrival rate scaled by recent satisfaction.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit, ndtri

from simrec.agents.brains.base import PageBatch, PageDecisions
from simrec.agents.collaborative import (
    TABLE_WORK,
    CollaborativeTaste,
    fit_collaborative,
    no_collaborative,
    out_of_fold_scores,
    table_work,
)
from simrec.agents.persona import Personas, persona_traits, with_profiles
from simrec.agents.taste import (
    DEFAULT_TASTE_DIM,
    ChoiceFactors,
    GenreTaste,
    RatingModel,
    damped_bias,
    fit_genre_taste,
    fit_rating_model,
    fit_taste,
    select_taste_dim,
    world_factors,
)
from simrec.arrays import excluded_mask, map_in_threads, rowwise_dot
from simrec.config import UtilityBrainConfig
from simrec.data.dataset import Dataset
from simrec.errors import ConfigError
from simrec.rng import Streams

_MAX_POSITIVES = 200_000
CROSS_FIT_SHARE = 0.2  # each user's latest share of interactions calibrates the click model
_MIN_CROSS_FIT = 200  # fewer held-out rows than this: calibrate in sample
_NEGATIVES_PER_POSITIVE = 4
REPLAY_BOUND = 30.0  # the replay offset's range: a logit past it is a sure watch
_EXPOSURE_DRAWS = 32  # exposure-drawn items per user that measure its watch rate
_USER_BLOCK = 16384


@dataclass
class ClickWeights:
    """Logit weights of the watch model (per standard deviation of each kind of evidence over
    exposure-drawn items), and that standardisation."""

    intercept: float
    affinity: float
    genre: float
    quality: float
    collaborative: float
    popularity_main: float
    popularity: float
    novelty: float
    aff_mean: float
    genre_mean: float
    quality_mean: float
    collab_mean: float
    aff_std: float
    genre_std: float
    quality_std: float
    collab_std: float


@dataclass
class _Evidence:
    """What the watch model weighs, fitted on some rows of a log: the taste model, the genre
    taste, the collaborative (item-to-item) scores, item quality (damped rating bias,
    standardised), standardised log popularity and the log exposure (n_items,)."""

    choice: ChoiceFactors
    genre: GenreTaste
    collab: CollaborativeTaste
    quality: np.ndarray
    z_pop: np.ndarray
    exposure: np.ndarray

    @classmethod
    def fit(cls, brain: UtilityBrain, data: Dataset, log) -> _Evidence:
        n_items = data.catalog.n_items
        counts = np.bincount(log.item, minlength=n_items)
        quality = damped_bias(log, n_items)[2]
        logpop = np.log1p(counts.astype(np.float64))
        return cls(
            brain._fit_taste(data, log),
            fit_genre_taste(log, data.catalog.genres),
            _collaborative(brain.config.collaborative, log, n_items, brain.seed),
            ((quality - quality.mean()) / (quality.std() or 1.0)).astype(np.float32),
            ((logpop - logpop.mean()) / (logpop.std() or 1.0)).astype(np.float32),
            brain._exposure(counts),
        )

    def features(self, users: np.ndarray, items: np.ndarray, own: int = 0) -> np.ndarray:
        """(m,), (m,) -> (m, 4) float64: affinity, genre taste, quality and collaborative
        score of each pair. The
        first ``own`` pairs are interactions of the log the evidence was fitted on: their
        genre taste leaves them out."""
        c = self.choice
        aff = c.affinity(np.einsum("nd,nd->n", c.taste[users], c.items[items]).astype(np.float64))
        genre = rowwise_dot(self.genre.lift, users, self.genre.items, items)
        genre[:own] = self.genre.leave_one_out(users[:own], items[:own])
        collab = self.collab.log_score(users, items)
        return np.column_stack([aff, genre, self.quality[items], collab]).astype(np.float64)


class UtilityBrain:
    """Statistical brain. ``fit(data)`` calibrates it; ``bind(personas, streams)`` prepares the
    per-agent arrays; ``decide(batch)`` decides a whole batch of pages at once."""

    name = "utility"

    def __init__(self, config: UtilityBrainConfig | None = None, seed: int = 0) -> None:
        self.config = config or UtilityBrainConfig()
        self.seed = seed
        self.choice: ChoiceFactors | None = None
        self.rating_model: RatingModel | None = None
        self.weights: ClickWeights | None = None
        self.evidence: _Evidence | None = None
        self.log_exposure = np.zeros(0, np.float32)
        self.has_ratings = False
        self.click_calibration: str | None = None
        # whether build.calibrate read the calibration from the cache (simrec.cache)
        self.calibration_cache = "off"
        self.taste_dim: int | None = None  # the choice model's dimensions (None: oracle)
        self.taste_dim_scores: dict[int, float] = {}  # what taste_dim: auto chose from
        self.exposure_watch = np.zeros(0)
        self.repeat_share = 0.0  # the log's share of consumption that repeats a pair
        self.replay = 0.0  # the watch-logit offset of an item the user consumed before
        # the repeat share that offset gives users shown the log's exposure: the log's, unless
        # even a sure replay of every consumed item shown falls short of it
        self.replay_share = 0.0
        # bound to a population by bind(): one row per agent
        self.streams = Streams(seed)
        self.source_user = np.zeros(0, np.int64)
        self.taste = np.zeros((0, 0), np.float32)
        self.genre_lift = np.zeros((0, 0), np.float32)
        self.collab = CollaborativeTaste(np.zeros((0, 0), np.float32), None, np.zeros(0), "")
        self.item_term = np.zeros(0, np.float32)
        self.conformity = np.zeros(0, np.float32)
        self.diversity = np.zeros(0, np.float32)
        self.arrival_rate = np.zeros(0, np.float32)
        self.session_rate = np.zeros(0)

    # ------------------------------------------------------------------ calibration

    def fit(self, data: Dataset) -> Personas:
        """Calibrate on a seed log; returns one persona per user of ``data``."""
        c = self.config
        if c.taste_model == "oracle" and data.truth is None:
            raise ConfigError(
                "brain.taste_model: 'oracle' is a synthetic world's own choice model, and "
                f"{data.source} has none; expected 'svd' or 'lda' for this data"
            )
        # the choice evidence, the rating model and the personas' traits are independent
        # fits of the same log: the first and the last run on threads beside the rating
        # model (numpy releases the GIL, and the traits' Python parts run while numpy fits
        # the others), and none depends on which finishes first
        with ThreadPoolExecutor(2, thread_name_prefix="simrec-fit") as pool:
            # (in this thread's context: the engine's user blocks, arrays.user_blocks_on)
            evidence = pool.submit(contextvars.copy_context().run, self._fit_evidence, data)
            traits = pool.submit(persona_traits, data)
            self.rating_model = self.fit_rating(data, data.interactions)
            self.has_ratings = bool(np.isfinite(data.interactions.rating).any())
            personas = with_profiles(data, traits.result(), self.rating_model.user_bias)
            self.evidence = evidence.result()
        self.choice = self.evidence.choice
        self.weights = self._fit_click_weights(data, personas)
        self.exposure_watch = self._exposure_watch(data.interactions, personas)
        self.repeat_share = data.interactions.repeat_share()
        self.replay = self._fit_replay(data.interactions, personas) if self.repeat_share else 0.0
        if self.replay_share < self.repeat_share - 0.05:
            logging.getLogger(__name__).warning(
                "the log repeats %.0f%% of its consumption; replays of what slates show reach "
                "%.0f%% at most under the log's exposure, so simulated users repeat less than "
                "its users, who also replay from their own libraries",
                100 * self.repeat_share,
                100 * self.replay_share,
            )
        return personas

    FITTED = (  # what fit() learns: the calibration cache stores exactly these
        "rating_model",
        "has_ratings",
        "evidence",
        "weights",
        "exposure_watch",
        "repeat_share",
        "replay",
        "replay_share",
        "log_exposure",
        "click_calibration",
        "taste_dim",
        "taste_dim_scores",
    )

    def fitted_state(self, personas: Personas) -> dict:
        """What :meth:`fit` learnt, and the personas it returned: plain arrays, numbers and
        the calibration's dataclasses (see :mod:`simrec.cache`)."""
        return {**{name: getattr(self, name) for name in self.FITTED}, "personas": personas}

    def restore(self, state: dict, data: Dataset) -> Personas:
        """Take :meth:`fitted_state` of a calibration on ``data`` instead of fitting; returns
        its personas. A state whose parts do not fit ``data``'s sizes is a ValueError."""
        if set(state) != {*self.FITTED, "personas"}:
            raise ValueError("it holds other parts than a calibration")
        personas, evidence = state["personas"], state["evidence"]
        n_users, n_items = data.interactions.n_users, data.catalog.n_items
        if not (
            isinstance(personas, Personas)
            and isinstance(evidence, _Evidence)
            and len(personas) == n_users
            and evidence.choice.items.shape[0] == n_items
            and evidence.z_pop.shape == (n_items,)
        ):
            raise ValueError("its parts do not fit this data's users and items")
        for name in self.FITTED:
            setattr(self, name, state[name])
        self.choice = self.evidence.choice
        return personas

    def _fit_evidence(self, data: Dataset) -> _Evidence:
        """The choice evidence of the whole log, with the taste model's dimensions chosen
        first when ``taste_dim`` is auto (:func:`select_taste_dim`)."""
        c = self.config
        log, n_items = data.interactions, data.catalog.n_items
        if c.taste_model == "oracle":  # the world's own model: its dimensions are its own
            self.taste_dim, self.taste_dim_scores = None, {}
        elif c.taste_dim != "auto":
            self.taste_dim, self.taste_dim_scores = c.taste_dim, {}
        else:
            self.taste_dim, self.taste_dim_scores = select_taste_dim(
                c.taste_model, log, n_items, self.seed
            )
        return _Evidence.fit(self, data, log)

    def fit_rating(self, data: Dataset, log) -> RatingModel:
        """The rating model of ``config`` (biased MF, ``rating_dim`` factors: by default
        ``taste_dim``, or DEFAULT_TASTE_DIM when that is auto) fitted on ``log`` (rows of
        ``data``'s)."""
        c = self.config
        dim = c.rating_dim or (DEFAULT_TASTE_DIM if c.taste_dim == "auto" else c.taste_dim)
        return fit_rating_model(
            log,
            data.catalog.n_items,
            data.scale,
            dim=dim,
            reg=c.fit_regularization,
            sweeps=c.fit_iterations,
            seed=self.seed,
        )

    def _fit_taste(self, data: Dataset, log) -> ChoiceFactors:
        """The choice model of ``config.taste_model`` fitted on ``log`` (rows of ``data``'s)."""
        c = self.config
        if c.taste_model == "oracle":
            return world_factors(data.truth)
        return fit_taste(c.taste_model, log, data.catalog.n_items, self.taste_dim, self.seed)

    def _fit_click_weights(self, data: Dataset, personas: Personas) -> ClickWeights:
        """Logistic regression of watched items against items drawn from the log's exposure
        (``brain.exposure``), on four kinds of evidence: the taste model's affinity, the
        user's genre taste, the item's quality (its damped rating bias) and its popularity
        (a main effect and its pull on conformists and explorers). ``click_calibration:
        cross-fit`` takes each user's latest CROSS_FIT_SHARE of interactions as positives,
        scored by evidence fitted on the earlier rest, so each weight is how well its evidence
        predicts choices it has not seen rather than how well it fits its own training rows
        (a fit that flatters recommenders of its family). With ``in-sample`` (the default), and
        with fewer than _MIN_CROSS_FIT such rows, the positives are rows the evidence was
        fitted on. ``self.click_calibration`` records which was used."""
        log, n_items = data.interactions, data.catalog.n_items
        g = Streams(self.seed).generator("click-calibration")
        self.log_exposure = self._exposure(data.catalog.popularity).astype(np.float32)
        ev, rows = self.evidence, np.arange(len(log))
        self.click_calibration = "in-sample"
        if self.config.click_calibration == "cross-fit":
            early, late = log.latest(CROSS_FIT_SHARE)
            if late.size >= _MIN_CROSS_FIT:
                ev, rows = _Evidence.fit(self, data, log.take(early)), late
                self.click_calibration = "cross-fit"
            else:
                self.click_calibration = f"in-sample (under {_MIN_CROSS_FIT} rows to cross-fit)"
        pos = rows[g.choice(rows.size, size=min(rows.size, _MAX_POSITIVES), replace=False)]
        users_pos, items_pos = log.user[pos].astype(np.int64), log.item[pos].astype(np.int64)
        users_neg = np.repeat(users_pos, _NEGATIVES_PER_POSITIVE)
        items_neg = g.choice(n_items, size=users_neg.size, p=np.exp(ev.exposure))
        users = np.concatenate([users_pos, users_neg])
        items = np.concatenate([items_pos, items_neg])
        y = np.concatenate([np.ones(users_pos.size), np.zeros(users_neg.size)])
        negatives = slice(users_pos.size, None)
        own = users_pos.size if ev is self.evidence else 0  # in sample: positives are its rows
        raw = ev.features(users, items, own)  # (m, 4): affinity, genre, quality, collaborative
        out_of_fold = (
            ev is self.evidence
            and self.config.collaborative == "out-of-fold"
            and not ev.collab.model.startswith("none")
        )
        if out_of_fold:  # in sample: no user's own rows vouch for their items
            oof = out_of_fold_scores(log, n_items, ev.collab, users, items, self.seed)
            raw[:, 3] = np.log(np.maximum(oof, ev.collab.eps))
        centre, spread = raw[negatives].mean(axis=0), raw[negatives].std(axis=0)
        spread[spread == 0] = 1.0
        self_centre, self_spread = centre, spread
        if out_of_fold or ev is not self.evidence:  # the simulation scores with the final evidence
            final = self.evidence.features(users[negatives], items[negatives])
            self_centre, self_spread = final.mean(axis=0), final.std(axis=0)
            self_spread[self_spread == 0] = 1.0
        zp = ev.z_pop[items]
        x = np.column_stack(
            [
                np.ones(y.size),
                (raw - centre) / spread,
                zp,
                personas.conformity[users] * zp,
                personas.diversity[users] * -zp,
            ]
        )
        w = _logistic_regression(x, y, l2=1e-3)
        density = len(log) / max(1, log.n_users * n_items)
        tau = self.config.random_item_watch_rate or float(np.clip(density, 1e-4, 0.5))
        intercept = w[0] + logit(tau) - logit(y.mean())  # prior correction for the sampling
        return ClickWeights(
            float(intercept),
            *(float(v) for v in w[1:8]),  # 4 kinds of evidence, the three popularity terms
            *(float(v) for v in self_centre),
            *(float(v) for v in self_spread),
        )

    def _exposure_watch(self, log, personas: Personas) -> np.ndarray:
        """(n_users,) each user's mean probability of watching an examined item drawn from the
        log's exposure among those they have not consumed (_EXPOSURE_DRAWS draws per user, as
        the simulation never shows a consumed item again): how much a user consumes per page
        when shown what they would have come across without a recommender."""
        self._bind_arrays(personas)
        n, n_items = len(personas), self.log_exposure.size
        g = Streams(self.seed).generator("exposure-watch")
        items = g.choice(n_items, size=(n, _EXPOSURE_DRAWS), p=np.exp(self.evidence.exposure))
        m = log.matrix(n_items)  # one row per persona: personas are the log's users here
        out = np.empty(n)

        def block(lo: int) -> None:  # blocks of rows are independent: on threads
            agents = np.arange(lo, min(n, lo + _USER_BLOCK))
            fresh = ~excluded_mask(items[agents], m[agents[0] : agents[-1] + 1])
            p = expit(self.watch_logit(agents, items[agents]))
            out[agents] = (p * fresh).sum(axis=1) / np.maximum(fresh.sum(axis=1), 1)

        map_in_threads(block, range(0, n, _USER_BLOCK))
        return out

    def _fit_replay(self, log, personas: Personas) -> float:
        """The watch-logit offset of an item the user consumed before (used where
        ``simulation.repeats`` is on), chosen so that users shown what they would come across
        without a recommender (the log's exposure, consumed items included) repeat the log's
        share of their consumption: with each user's consumed exposure mass ``s_u`` and watch
        probability of a fresh item ``p_u`` (``exposure_watch``), the expected repeat share
        ``sum_ui w_i sigmoid(l_ui + b) / (that + sum_u (1 - s_u) p_u)`` over the consumed
        pairs (exposure ``w_i``, watch logit ``l_ui``) is solved for ``b`` by bisection (it
        grows with ``b``). Personas are the log's users here."""
        n_items = self.log_exposure.size
        m = log.matrix(n_items)
        users = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        items = m.indices.astype(np.int64)
        w = np.exp(self.evidence.exposure)[items]
        logits = np.empty(items.size)
        for lo in range(0, items.size, _USER_BLOCK * 8):
            part = slice(lo, lo + _USER_BLOCK * 8)
            logits[part] = self.watch_logit(users[part], items[part, None])[:, 0]
        mass = np.bincount(users, w, m.shape[0])
        fresh = float(((1.0 - mass) * self.exposure_watch).sum())

        def share(b: float) -> float:
            old = float((w * expit(logits + b)).sum())
            return old / max(old + fresh, 1e-300)

        lo, hi = -REPLAY_BOUND, REPLAY_BOUND
        if share(hi) <= self.repeat_share:
            b = hi
        elif share(lo) >= self.repeat_share:
            b = lo
        else:
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if share(mid) < self.repeat_share else (lo, mid)
            b = 0.5 * (lo + hi)
        self.replay_share = share(b)
        return b

    def _exposure(self, counts: np.ndarray) -> np.ndarray:
        """(n_items,) log of the exposure distribution, proportional to ``(counts + 1) **
        brain.exposure`` (0: uniform; 1: an item's share of the log is taken for how often
        people came across it, not for how much they like it)."""
        w = self.config.exposure * np.log1p(counts.astype(np.float64))
        return w - np.logaddexp.reduce(w)

    # ------------------------------------------------------------------ per-agent state

    def bind(self, personas: Personas, streams: Streams) -> None:
        """Gather the per-agent arrays the hot path reads (indexed by agent)."""
        if self.choice is None:
            raise RuntimeError("UtilityBrain.bind() called before fit()")
        self.streams = streams
        self._bind_arrays(personas)
        self.arrival_rate = personas.arrival_rate
        # expected items consumed per page shown the log's exposure, per item examined
        self.session_rate = self.exposure_watch[personas.source_user] / personas.session_items

    def reseed(self, streams: Streams) -> None:
        """Draw from ``streams`` from now on (the Gym environment gives each episode its own)."""
        self.streams = streams

    def _bind_arrays(self, personas: Personas) -> None:
        """The arrays ``watch_logit`` reads, one row per persona."""
        src = personas.source_user
        self.source_user = src
        self.taste = np.ascontiguousarray(self.choice.taste[src])
        self.genre_lift = np.ascontiguousarray(self.evidence.genre.lift[src])
        self.collab = self.evidence.collab.rows(src)
        w, ev = self.weights, self.evidence
        constant = -(
            w.affinity * w.aff_mean / w.aff_std
            + w.genre * w.genre_mean / w.genre_std
            + w.quality * w.quality_mean / w.quality_std
            + w.collaborative * w.collab_mean / w.collab_std
        )
        self.item_term = (
            w.intercept
            + constant
            + w.quality / w.quality_std * ev.quality
            + w.popularity_main * ev.z_pop
        ).astype(np.float32)
        self.conformity = personas.conformity
        self.diversity = personas.diversity

    # ------------------------------------------------------------------ decisions

    def decide(self, views: PageBatch) -> PageDecisions:
        """Decide every page in ``views`` at once (see the module docstring for the model)."""
        c = self.config
        agents, items = views.agents, views.items
        n, k = items.shape
        valid = items >= 0
        safe = np.where(valid, items, 0)
        # one uniform per slot decides examination, watching and the rating noise:
        # examined = u < e; watched = u < e * c (a subset); given watched, u / (e * c) is again
        # uniform and independent of the decision, so it drives the rating noise
        u = self.streams.uniform("decide", agents, views.tick, views.page, k + 1)
        position = np.arange(1, k + 1, dtype=np.float64)
        exam_p = c.first_examination * position**-c.position_decay
        examined = valid & (u[:, :k] < exam_p[None, :])
        x = self.watch_logit(agents, safe)
        if views.social is not None:
            x += c.social_weight * self.conformity[agents][:, None] * views.social
        if views.consumed is not None:  # simulation.repeats: what the user consumed before
            x += np.float32(self.replay) * views.consumed
        watch_p = exam_p[None, :] * expit(x)
        clicked = valid & (u[:, :k] < watch_p)
        rating = np.full((n, k), np.nan, np.float32)
        value = clicked.astype(np.float64)
        if self.has_ratings:  # ratings only where watched: a few percent of the cells
            rm = self.rating_model
            r, col = np.nonzero(clicked)
            expected = rm.expected(self.source_user[agents[r]], safe[r, col])
            noise_u = u[r, col] / watch_p[r, col]
            sampled = rm.sample(expected, ndtri(noise_u))
            rating[r, col] = sampled
            value = np.zeros((n, k))
            value[r, col] = rm.scale.normalise(sampled)
        leave = u[:, k] < self._leave_probability(agents, exam_p.sum(), value, views.page)
        return PageDecisions(examined, clicked, rating, leave, np.full(n, self.name, dtype=object))

    def _leave_probability(
        self, agents: np.ndarray, examined_per_page: float, value: np.ndarray, page: int
    ) -> np.ndarray:
        """P(leave after this page) (n,) under ``brain.session_length``; examined_per_page:
        the expected number of items examined on a full page; value: (n, k) the normalised
        rating of what was consumed (1 without ratings), 0 elsewhere."""
        c = self.config
        if c.session_length == "log":
            return np.minimum(1.0, examined_per_page * self.session_rate[agents])
        page_value = np.minimum(1.0, value.sum(axis=1) / 2.0)
        return expit(
            c.leave_base + c.fatigue_per_page * page - c.leave_satisfaction_weight * page_value
        )

    def choice_logit(self, agents: np.ndarray, items: np.ndarray) -> np.ndarray:
        """How likely each agent is to pick each item on its own, outside any slate: the watch
        logit plus the item's log exposure (see ``brain.exposure``). agents (n,), items (n, k)
        -> (n, k) float32. The fidelity report's discrimination scores these."""
        return self.watch_logit(agents, items) + self.log_exposure[items]

    def watch_logit(self, agents: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The logit of watching an examined item, without friends' signal: agents (n,),
        items (n, k) valid item indices -> (n, k) float32."""
        w, ev = self.weights, self.evidence
        aff = self.choice.affinity(
            np.einsum("nd,nkd->nk", self.taste[agents], self.choice.items[items])
        )
        x = aff * np.float32(w.affinity / w.aff_std)
        x += np.einsum("ng,nkg->nk", self.genre_lift[agents], ev.genre.items[items]) * np.float32(
            w.genre / w.genre_std
        )
        x += self.collab.log_score(agents, items) * np.float32(w.collaborative / w.collab_std)
        x += self.item_term[items]
        # + (w_pop * conformity - w_nov * diversity) * z_pop
        per_agent = w.popularity * self.conformity[agents] - w.novelty * self.diversity[agents]
        x += per_agent[:, None] * ev.z_pop[items]
        return x

    # ------------------------------------------------------------------ sessions

    def arrivals(self, agents: np.ndarray, tick: int, satisfaction: np.ndarray) -> np.ndarray:
        """Which of ``agents`` (m,) start a session this tick -> (m,) bool."""
        p = np.clip(self.arrival_rate[agents] * (0.5 + satisfaction[agents]), 0.0, 1.0)
        return self.streams.uniform("arrive", agents, tick, 0, 1)[:, 0] < p

    def session_value(self, watched_value: np.ndarray, watched: np.ndarray) -> np.ndarray:
        """Satisfaction from one session: mean value of what was watched, 0 when nothing was."""
        return np.where(watched > 0, watched_value / np.maximum(watched, 1), 0.0)

    def end_sessions(
        self, agents: np.ndarray, tick: int, value: np.ndarray, satisfaction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """New satisfaction (m,) and churn (m,) bool after sessions worth ``value`` (m,)."""
        c = self.config
        s = (1 - c.satisfaction_memory) * satisfaction[agents] + c.satisfaction_memory * value
        unhappy = s < c.churn_threshold
        churn = unhappy & (self.streams.uniform("churn", agents, tick, 0, 1)[:, 0] < c.churn_hazard)
        return s.astype(np.float32), churn


def _collaborative(kind: str, log, n_items: int, seed: int) -> CollaborativeTaste:
    """The collaborative evidence of ``brain.collaborative`` ``kind`` on ``log``: none when
    asked, or when the score table would cost more than TABLE_WORK (said in the manifest)."""
    if kind == "none":
        return no_collaborative(log.n_users)
    work = table_work(log.matrix(n_items))
    if work > TABLE_WORK:
        why = f"none (a score table of {work:.1e} operations, over {TABLE_WORK:.0e})"
        logging.getLogger(__name__).info("collaborative evidence: %s", why)
        return no_collaborative(log.n_users, why)
    return fit_collaborative(log, n_items, seed)


def _logistic_regression(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """L2-regularised logistic regression by L-BFGS. x: (m, p), y: (m,) -> (p,) weights."""

    sign = 2.0 * y - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        # -log sigmoid(sign * z), one ufunc pass
        nll = np.logaddexp(0.0, -sign * z).mean() + 0.5 * l2 * (w[1:] @ w[1:])
        grad = (expit(z) - y) @ x / y.size
        grad[1:] += l2 * w[1:]
        return float(nll), grad

    return minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x

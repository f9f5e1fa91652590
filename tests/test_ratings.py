"""The rating model's ordinal link: sampled ratings keep the log's histogram."""

from __future__ import annotations

import numpy as np

from simrec.agents.taste import fit_rating_model


def _histogram(values: np.ndarray, scale) -> np.ndarray:
    index = np.round((values - scale.low) / scale.step).astype(np.int64)
    n = int(round((scale.high - scale.low) / scale.step)) + 1
    return np.bincount(index, minlength=n) / values.size


def test_sampled_ratings_keep_the_training_histogram(tiny_world):
    log, scale = tiny_world.interactions, tiny_world.scale
    rated = np.isfinite(log.rating)
    model = fit_rating_model(
        log, tiny_world.catalog.n_items, scale, dim=8, reg=20.0, sweeps=5, seed=0
    )
    assert model.cuts is not None and np.all(np.diff(model.cuts) >= 0)
    u, i = log.user[rated], log.item[rated]
    z = np.random.default_rng(7).standard_normal(u.size)  # other draws than the fit's
    expected = model.expected(u, i)
    real = _histogram(log.rating[rated].astype(np.float64), scale)
    cut = _histogram(model.sample(expected, z), scale)
    rounded = _histogram(scale.quantise(expected + model.sigma * z), scale)
    assert np.abs(cut - real).max() < 0.02
    assert np.abs(cut - real).sum() < np.abs(rounded - real).sum()


def test_a_continuous_scale_is_rounded(tiny_world):
    log = tiny_world.interactions
    from dataclasses import replace

    fine = replace(tiny_world.scale, step=0.01)  # 401 values: no ordinal link
    model = fit_rating_model(
        log, tiny_world.catalog.n_items, fine, dim=4, reg=20.0, sweeps=2, seed=0
    )
    assert model.cuts is None
    assert np.allclose(model.sample(np.array([3.004]), np.array([0.0])), 3.0)


def test_threaded_blocks_change_nothing(tiny_world, monkeypatch):
    """The synthetic world's chunks and the LDA's document blocks run on threads: the same
    bytes with one thread or several, and with blocks of any size."""
    import simrec.agents.taste as taste
    import simrec.arrays as arrays
    import simrec.data.synthetic as synthetic
    from simrec.config import SyntheticWorldConfig
    from simrec.data import make_world

    def both():
        world = make_world(SyntheticWorldConfig(users=300, items=90), seed=5)
        log = world.interactions
        lda = taste._lda_vb(log.matrix(world.catalog.n_items), 6, seed=1)
        return log.item.tobytes() + log.timestamp.tobytes(), lda[0].tobytes() + lda[1].tobytes()

    monkeypatch.setattr(synthetic, "_CHUNK", 64)  # several chunks (a world of its own)
    monkeypatch.setattr(taste, "LDA_BLOCK", 37)  # several blocks, uneven
    monkeypatch.setattr(arrays, "MAX_THREADS", 1)
    serial = both()
    monkeypatch.setattr(arrays, "MAX_THREADS", 4)
    assert both() == serial
    monkeypatch.setattr(taste, "LDA_BLOCK", 1 << 20)  # one block
    assert both()[1] == serial[1]

"""The Gymnasium environment: passes gymnasium's own checker and behaves like the simulator."""

from __future__ import annotations

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")  # a dev dependency: always present in make test
from gymnasium.utils.env_checker import check_env  # noqa: E402

from simrec.gym import RecEnv  # noqa: E402

CFG = {
    "seed": 3,
    "data": {"synthetic": {"users": 80, "items": 60, "interactions_per_user": 15}},
    "brain": {"taste_dim": 4},
    "simulation": {"page_size": 5, "max_pages": 4},
}


@pytest.mark.parametrize("reward", ["clicks", "ratings"])
def test_passes_gymnasium_check_env(reward):
    check_env(RecEnv(CFG, reward=reward), skip_render_check=True)


def _episode(env, seed, policy, ends=None):
    obs, info = env.reset(seed=seed)
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, r, terminated, truncated, info = env.step(policy(obs))
        total += r
        steps += 1
    if ends is not None:
        ends.append((steps, terminated, truncated))
    return total, steps


def test_the_page_cap_truncates_and_leaving_terminates():
    """Gymnasium's convention: ``terminated`` when the user leaves (the MDP's end),
    ``truncated`` when the page cap cuts the episode short."""
    env, ends = RecEnv(CFG), []
    for s in range(60):
        _episode(env, s, lambda o: np.arange(5), ends)
    assert all(term != trunc for _, term, trunc in ends)  # exactly one of the two
    assert all(steps == 4 for steps, _, trunc in ends if trunc)  # only at max_pages
    assert any(trunc for *_, trunc in ends) and any(term for _, term, _ in ends)


def test_episodes_are_reproducible_and_end_within_max_pages():
    env = RecEnv(CFG)
    first = [_episode(env, s, lambda o: np.arange(5)) for s in range(20)]
    again = [_episode(env, s, lambda o: np.arange(5)) for s in range(20)]
    assert first == again
    assert all(1 <= steps <= 4 for _, steps in first)


def test_reward_follows_the_user_taste():
    """Slates of the items each user's taste ranks highest earn more clicks than the items it
    ranks lowest: the brain, not noise, produces the reward."""
    env = RecEnv(CFG)
    taste, items = env.brain.taste, env.brain.choice.items

    def best(obs):
        return np.argsort(-(items @ taste[env._agent]))[:5]

    def worst(obs):
        return np.argsort(items @ taste[env._agent])[:5]

    good = sum(_episode(env, s, best)[0] for s in range(300))
    bad = sum(_episode(env, s, worst)[0] for s in range(300))
    assert good > 2 * bad, (good, bad)


def test_watched_items_enter_the_observed_history():
    env = RecEnv(CFG, history=30)
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        before = obs["history"].copy()
        obs, reward, *_, info = env.step(np.arange(5) + 10)
        if reward > 0:
            watched = (np.arange(5) + 10)[info["clicked"]]
            assert set(obs["history"][: watched.size]) == set(watched)
            assert obs["history"][watched.size] == before[0]
            return
    pytest.fail("no episode watched anything")


def test_bad_actions_and_settings():
    env = RecEnv(CFG)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="item indices in 0..59"):
        env.step(np.array([0, 1, 2, 3, 60]))
    from simrec.errors import ConfigError

    with pytest.raises(ConfigError, match="reward"):
        RecEnv(CFG, reward="money")

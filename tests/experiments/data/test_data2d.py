"""Exact draws of the DTS paper's tilted 2D targets (experiments/data/data2d.py: tilted_draws),
checked against self-normalised importance weighting of many data draws by exp(r)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import rewards
from configs import toy2d
from experiments.data import data2d


@pytest.mark.parametrize('dataset', ['ring', 'checkerboard'])
def test_tilted_draws_match_importance_weighted_data(dataset):
  config = toy2d.get_config(dataset)
  exact = data2d.tilted_draws(config.data, config.reward, 50_000, seed=0)
  data = data2d.make_dataset(ml_collections.ConfigDict(dict(config.data, num_points=400_000)), 1)
  r = np.asarray(rewards.get_reward(config.reward, (2,))(jnp.asarray(data)), np.float64)
  w = np.exp(r - r.max())
  w /= w.sum()
  modes = data2d.mixture_params(config.data)['means'] if dataset == 'ring' else np.zeros((1, 2))
  stats = {
      'mean': (lambda x: x, 0.03),
      'second moment': (lambda x: x**2, 0.05),
      # the spread within a mode: 2 s^2 m^2 / (s^2 + m^2) = 0.09 on the ring (0.18 if wrong)
      'squared distance to the nearest mode': (
          lambda x: np.min(np.sum((x[:, None] - np.asarray(modes)) ** 2, -1), 1)[:, None], 0.01),
  }
  for name, (f, tol) in stats.items():
    np.testing.assert_allclose(f(exact).mean(0), (w[:, None] * f(data)).sum(0), atol=tol,
                               err_msg=name)


def test_tilted_draws_only_where_exact():
  config = toy2d.get_config('ring')
  config.reward.temperature = 2.0   # exp(r / 2) of a mixture is not a mixture
  assert data2d.tilted_draws(config.data, config.reward, 10) is None
  config = toy2d.get_config('moons')
  assert data2d.tilted_draws(config.data, config.reward, 10) is None

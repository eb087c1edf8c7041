"""The mixture's class posterior (rewards/mixture_class.py) and the exact class-conditional
target it gives at lambda = 1 (experiments/evaluation/recorders.py: exact_class_metrics)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from configs.figures import dts_exact
from experiments.evaluation import metrics
from models import gmm
from rewards import mixture_class


def _cfg(**fields):
  means, stds, weights = dts_exact.mixture()
  return common.reward_config(name='mixture_class', class_means=means, class_stds=stds,
                              class_weights=weights, **fields)


def test_the_reward_is_the_class_posterior_of_the_mixture():
  cfg = _cfg(target_class=3)
  reward = mixture_class.build(cfg, (64,))
  params = mixture_class.mixture(cfg)
  x = np.asarray(gmm.sample(params, jax.random.key(0), 8))
  means = np.asarray(params['means'], np.float64)
  log_lik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)   # unit stds, equal weights
  want = log_lik[:, 3] - np.log(np.exp(log_lik - log_lik.max(1, keepdims=True)).sum(1)) \
      - log_lik.max(1)
  np.testing.assert_allclose(np.asarray(reward(jnp.asarray(x))), want, rtol=1e-4, atol=1e-4)
  # A batch of classes through the condition, as reward.target_classes runs them.
  cond = {'target_class': jnp.arange(8) % 10}
  got = np.asarray(reward(jnp.asarray(x), cond))
  np.testing.assert_allclose(got, log_lik[np.arange(8), np.arange(8) % 10] - np.log(
      np.exp(log_lik - log_lik.max(1, keepdims=True)).sum(1)) - log_lik.max(1), atol=1e-4)


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match='needs reward.class_means'):
    mixture_class.build(common.reward_config(name='mixture_class'), (64,))
  with pytest.raises(ValueError, match='has dimension 64; the data has dimension 2'):
    mixture_class.build(_cfg(), (2,))
  with pytest.raises(ValueError, match=r'target_class must lie in 0..9'):
    mixture_class.build(_cfg(target_class=10), (64,))


def test_exact_draws_of_a_class_sit_at_the_floor_and_another_class_far_above():
  params = mixture_class.mixture(_cfg())
  component = mixture_class.class_component(params, 2)
  mean, cov = np.asarray(component['means'][0]), np.eye(64)
  exact = np.asarray(gmm.sample(component, jax.random.key(1), 1024))
  other = np.asarray(gmm.sample(mixture_class.class_component(params, 5), jax.random.key(1),
                                1024))
  floor = metrics.frechet_to_moments(exact, mean, cov)
  assert 0 < floor < 3 < metrics.frechet_to_moments(other, mean, cov)

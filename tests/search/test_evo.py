"""EvoSearch (search/evo.py) against a transliteration of its released control flow
(tests/search/evo_reference.py) on the same draws, steps and reward; its budget sizing; and the
marginal-preserving mutation, derived in its docstring, checked on exact draws of p_t."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import search
from configs import gmm2d
from experiments import problem as problem_lib
from models import gmm
from search import evo
from tests import helpers
from tests.search import common
from tests.search import evo_reference


def _config(budget, num_steps=10, **knobs):
  config = gmm2d.get_config('quick,evo')
  config.sampler.num_steps = num_steps
  config.search.update(budget=budget, **knobs)
  return config


def test_the_reference_schedule_at_100_samples_of_compute_is_the_reference_populations():
  config = search.make_config(_config(5000, 50).search, 1.0, 50)
  assert config.populations == (42, 26, 26, 26, 30) and config.ends == (0, 20, 30, 40)
  assert evo.cost(config.populations, config.ends, 50) == 5000
  small = search.make_config(_config(2500, 50).search, 1.0, 50)
  assert small.populations == (21, 13, 13, 13, 15)


def test_the_search_follows_the_released_control_flow():
  m = 10
  pops_rel = (6, 4, 4)
  config = _config(evo.cost(pops_rel, (0, 5), m), m, evo_schedule=(0.0, 0.5),
                   evo_populations=pops_rel, evo_elites=2)
  problem = problem_lib.build(config)
  sampler, reward = problem.sampler, problem.reward
  method_config = search.make_config(config.search, 1.0, m)
  assert method_config.populations == pops_rel and method_config.ends == (0, 5)
  key = jax.random.key(5)
  result = jax.jit(lambda k: evo.run(k, sampler, reward, method_config))(key)
  assert int(result.nfe) == evo.cost(pops_rel, (0, 5), m)

  init_key, loop_key, _ = jax.random.split(key, 3)
  gen_keys = [jax.random.split(jax.random.fold_in(loop_key, g), 5) for g in range(2)]
  ends = (0, 5)

  def draws(kind, g, i):
    if kind == 'roll':
      return jax.random.normal(jax.random.fold_in(gen_keys[g][0], i), (pops_rel[g], 2))
    if kind == 'perm':
      n = sum(pops_rel[:g + 1])
      keys = jax.random.split(gen_keys[g][1], pops_rel[g + 1] - 2)
      return np.asarray(jax.random.permutation(keys[i], n))
    if kind == 'mut':
      return np.asarray(jax.random.normal(gen_keys[g][2], (pops_rel[g + 1] - 2, 2)))
    # The main loop after g evolutions: its step at e_{g-1} again, then onwards.
    if g == 0:
      return jax.random.normal(jax.random.fold_in(jax.random.fold_in(loop_key, 10_000), i),
                               (pops_rel[0], 2))
    if i == ends[g - 1]:
      return jax.random.normal(gen_keys[g - 1][3], (pops_rel[g], 2))
    return jax.random.normal(jax.random.fold_in(gen_keys[g - 1][4], i), (pops_rel[g], 2))

  @jax.jit
  def step(x, i, noise):
    d = sampler.denoise(x, i)
    return jnp.where(i == m - 1, d.x0, sampler.step(x, d, i, noise))

  best_r, best_x0 = evo_reference.generate(
      np.asarray(sampler.init_noise(init_key, pops_rel[0])), m,
      lambda x, i, z: np.asarray(step(jnp.asarray(x), i, jnp.asarray(z, jnp.float32))),
      lambda x0: np.asarray(reward(jnp.asarray(x0), None)),
      lambda i: float(sampler.noise_scale(i)), draws, ends, pops_rel, elite_size=2)
  np.testing.assert_allclose(float(result.reward[0]), best_r, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(result.x0[0]), best_x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('level', [0, 12, 30])
def test_the_marginal_mutation_keeps_p_t(level):
  """x_t = alpha x0 + sigma eps from exact draws x0 of the mixture (so x0 is an exact draw of
  p(x0 | x_t)): the mutated states keep p_t's mean and covariance (alpha m, alpha^2 C +
  sigma^2 I) to Monte Carlo error, and move. (The released mutation x + s z adds s^2 I to the
  covariance at each generation; at these sizes that is within the error, so it is not tested
  against.)"""
  sampler = common.make_sampler('vp', num_steps=40)
  params = helpers.mixture_params()
  t = sampler.grid[level]
  alpha, sigma = float(sampler.interpolant.alpha(t)), float(sampler.interpolant.sigma(t))
  n = 20_000
  x0 = np.asarray(gmm.sample(params, jax.random.key(1), n))
  x = alpha * x0 + sigma * np.asarray(jax.random.normal(jax.random.key(2), (n, 2)))
  weights, means = np.asarray(helpers.WEIGHTS), np.asarray(helpers.MEANS)
  m = weights @ means
  cov0 = sum(w * (np.diag([s ** 2] * 2) + np.outer(mu - m, mu - m))
             for w, mu, s in zip(weights, means, helpers.STDS))
  mean_t, cov_t = alpha * m, alpha ** 2 * cov0 + sigma ** 2 * np.eye(2)
  marginal = search.make_config(common.search_cfg('evo', budget=10 ** 5,
                                                  evo_mutation='marginal'), 1.0, 40)
  key = jax.random.key(9)
  kept = np.asarray(evo.mutate(key, x, x0, 1, level, sampler, marginal))
  # The identity it rests on: its noise part is a eps + rho z, eps = (x - alpha x0) / sigma.
  z = np.asarray(jax.random.normal(key, x.shape))
  eps = (x - alpha * x0) / sigma
  np.testing.assert_allclose((kept - alpha * x0) / sigma, np.sqrt(0.96) * eps + 0.2 * z,
                             atol=1e-4)
  se = np.sqrt(np.diag(cov_t) / n)
  assert np.all(np.abs(kept.mean(0) - mean_t) < 4 * se), (kept.mean(0), mean_t)
  # Against the population it mutated (which is p_t to Monte Carlo error, ~2% here): measured
  # within 0.8%; dropping the (1 - a) alpha x0 term shrinks the spread by 3.4% at level 30.
  np.testing.assert_allclose(np.diag(np.cov(kept.T)), np.diag(np.cov(x.T)), rtol=0.015)
  np.testing.assert_allclose(np.diag(np.cov(x.T)), np.diag(cov_t), rtol=0.04)
  if level == 0:   # noise (alpha = 0.0066, sigma = 1.0000 at t = 1): the Gaussian mutation
    released = search.make_config(common.search_cfg('evo', budget=10 ** 5), 1.0, 40)
    gaussian = np.asarray(evo.mutate(key, x, x0, 0, level, sampler, released))
    np.testing.assert_allclose(kept, gaussian, atol=(1 - np.sqrt(0.96)) * 0.0066 * 5 + 1e-4)
  # It moves the states: rho = 0.2 of the noise part is fresh.
  assert np.mean(np.abs(kept - x)) > 0.05 * sigma


@pytest.mark.parametrize('knobs,message', [
    (dict(evo_schedule=(0.5, 0.4)), 'must increase strictly'),
    (dict(evo_populations=(4, 4)), 'must be 5 positive sizes'),
    (dict(evo_mutation='cauchy'), "Unknown search.evo_mutation 'cauchy'"),
    (dict(evo_mutation_rate=1.5), r'evo_mutation_rate must lie in \[0, 1\]'),
    (dict(budget=100), 'too small for evo: it needs at least'),
])
def test_bad_settings_are_named(knobs, message):
  config = _config(5000, 50)
  config.search.update(**knobs)
  with pytest.raises(ValueError, match=message):
    search.make_config(config.search, 1.0, 50)

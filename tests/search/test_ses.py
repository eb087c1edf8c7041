"""Spectral evolution search (search/ses.py): its wavelet band against the orthonormal Haar
transform, and its control flow against a transliteration of the reference's `ses_search`
(tests/search/ses_reference.py) on the same draws and the same objective."""

import jax
import numpy as np
import pytest

import search
from configs import gmm2d
from experiments import problem as problem_lib
from search import ses
from search import zero_order
from tests.search import ses_reference


def _haar(x):
  """One level of the orthonormal 2D Haar transform (pywt's db1) of x [H, W, C]."""
  a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
  return (a + b + c + d) / 2, ((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2)


def _inverse_haar(low, details):
  h, v, dd = details
  out = np.zeros((2 * low.shape[0], 2 * low.shape[1], low.shape[2]))
  out[0::2, 0::2] = (low + h + v + dd) / 2
  out[0::2, 1::2] = (low + h - v - dd) / 2
  out[1::2, 0::2] = (low - h + v - dd) / 2
  out[1::2, 1::2] = (low - h - v + dd) / 2
  return out


def _wavedec(x, level):
  details = []
  for _ in range(level):
    x, d = _haar(x)
    details.append(d)
  return x, details


def _waverec(low, details):
  for d in reversed(details):
    low = _inverse_haar(low, d)
  return low


def test_the_band_is_the_haar_low_band_and_the_inverse_keeps_the_high_bands():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(16, 8, 3))
  band = rng.normal(size=(4, 2, 3))
  low, details = _wavedec(z, 2)
  np.testing.assert_allclose(np.asarray(ses.low_band(z[None], 2))[0], low, atol=1e-6)
  np.testing.assert_allclose(np.asarray(ses.with_low_band(z[None], band[None], 2))[0],
                             _waverec(band, details), atol=1e-6)
  assert ses.band_level((8, 8, 4), 4) == 3 and ses.band_level((16, 12, 3), 4) == 2
  assert ses.band_level((2,), 4) == 0


def test_the_search_follows_the_reference_control_flow():
  """The same base noise, draws and objective: the same best candidate and score."""
  config = gmm2d.get_config('quick,ses')
  config.sampler.num_steps = 4
  config.search.update(budget=4 * 10 * 5, ses_popsize=10, ses_elites=5)
  problem = problem_lib.build(config)
  method_config = search.make_config(config.search, 1.0, 4)
  key = jax.random.key(3)
  result = jax.jit(lambda k: ses.run(k, problem.sampler, problem.reward, method_config))(key)

  base_key, first_key, loop_key, _ = jax.random.split(key, 4)
  z = np.asarray(jax.random.normal(base_key, (1, 2)))
  draws = lambda gen: np.asarray(jax.random.normal(
      first_key if gen == 0 else jax.random.fold_in(loop_key, gen - 1), (10, 2)))
  preview = jax.jit(lambda eps: problem.reward(
      zero_order.ode_samples(problem.sampler, eps, None), None))
  objective = lambda eps: float(preview(np.asarray(eps, np.float32).reshape(1, 2))[0])
  best_c, best_score = ses_reference.ses_search(
      z[0], objective, draws, split=lambda x: (x, None), reconstruct=lambda c, _: c,
      total_eval_budget=50, popsize=10, k_elites=5)
  assert int(result.nfe) == 4 * 50
  np.testing.assert_allclose(float(result.reward[0]), best_score, rtol=1e-5, atol=1e-6)
  x_best = np.asarray(zero_order.ode_samples(problem.sampler, best_c.reshape(1, 2)
                                             .astype(np.float32), None))
  np.testing.assert_allclose(np.asarray(result.x0), x_best, atol=1e-5)


def test_one_generation_is_a_search_of_its_own():
  config = gmm2d.get_config('quick,ses')
  config.sampler.num_steps = 4
  config.search.update(budget=4 * 10, ses_popsize=10)
  problem = problem_lib.build(config)
  result = ses.run(jax.random.key(0), problem.sampler, problem.reward,
                   search.make_config(config.search, 1.0, 4))
  assert int(result.nfe) == 40 and int(result.num_scored) == 10
  assert np.isfinite(float(result.reward[0]))


def test_bad_settings_are_named():
  config = gmm2d.get_config('quick,ses')
  config.search.update(budget=30, ses_popsize=10)
  with pytest.raises(ValueError, match='too small for ses: it needs at least 40 NFEs'):
    search.make_config(config.search, 1.0, 4)
  config.search.update(budget=400, ses_elites=11)
  with pytest.raises(ValueError, match='ses_elites must be between 1 and search.ses_popsize'):
    search.make_config(config.search, 1.0, 4)

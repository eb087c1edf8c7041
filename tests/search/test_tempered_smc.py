"""Tempered SMC (search/tempered_smc.py): the adaptive schedule solves the ESS equation, anneals,
and ends at beta = 1 (its exactness: test_exactness.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import search
from rewards import analytic
from search import tempered_smc
from tests.search import common

LINEAR = analytic.linear((1.0, 0.5))


def test_tempering_schedule_solves_the_closed_form_ess():
  """Rewards taking two values (a fraction p at a, the rest at b): from beta_prev the ESS of
  the increments (beta - beta_prev) r is N (p e^{da} + q e^{db})^2 / (p e^{2da} + q e^{2db}),
  d = beta - beta_prev. The solver's beta must hit the target ESS where the root lies inside
  [beta_prev, 1], and take 1 where even beta = 1 keeps it."""
  n, p, a, b, lam = 1000, 0.3, 4.0, -1.0, 1.0
  r = jnp.asarray(np.where(np.arange(n) < p * n, a, b), jnp.float32)
  valid = jnp.ones(n, bool)

  def closed_form(delta):
    q = 1 - p
    num = (p * np.exp(delta * a / lam) + q * np.exp(delta * b / lam)) ** 2
    return num / (p * np.exp(2 * delta * a / lam) + q * np.exp(2 * delta * b / lam))

  for beta_prev, target in ((0.0, 0.5), (0.2, 0.8), (0.0, 0.95)):
    value_prev = beta_prev * r
    beta = float(tempered_smc.next_beta(beta_prev, value_prev, r, valid, lam, target))
    root = scipy.optimize.brentq(lambda d: closed_form(d) - target, 0.0, 50.0)
    expected = min(beta_prev + root, 1.0)
    assert beta == pytest.approx(expected, abs=2e-3), (beta_prev, target, beta, expected)
    if expected < 1.0:
      assert closed_form(beta - beta_prev) == pytest.approx(target, abs=2e-3)
  # Flat rewards keep every weight equal: straight to beta = 1.
  flat = jnp.ones(n)
  assert float(tempered_smc.next_beta(0.0, jnp.zeros(n), flat, valid, lam, 0.5)) == 1.0


def test_tempered_smc_anneals_and_ends_at_one():
  sampler = common.make_sampler('vp', num_steps=20)
  config = search.make_config(common.search_cfg('tempered_smc', budget=20 * 400), 0.02, 20)
  result, betas = jax.jit(lambda k: tempered_smc.run_with_schedule(
      k, sampler, LINEAR, config))(jax.random.key(0))
  betas = np.asarray(betas)
  assert betas.shape == (20,) and betas[0] < 0.9 and betas[-1] == 1.0
  assert np.all(np.diff(betas) >= 0)
  assert int(result.nfe) == 20 * 400

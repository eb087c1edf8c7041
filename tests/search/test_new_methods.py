"""Zero-order and random search over initial noise, tempered SMC's adaptive schedule, beam
search and the decaying particle schedules: what each promises beyond the every-method tests
(NFE accounting, invalid rewards, the mesh, exactness in test_exactness.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import search
from rewards import analytic
from search import tempered_smc
from search import zero_order
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


def test_zero_order_neighbours_lie_on_the_sphere_or_in_the_ball():
  cfg = common.search_cfg('zero_order', budget=10_000, num_particles=2, zo_neighbors=64,
                          zo_radius=0.3)
  pivots = jax.random.normal(jax.random.key(0), (2, 2))
  for neighborhood in ('sphere', 'ball'):
    cfg.zo_neighborhood = neighborhood
    config = search.make_config(cfg, 1.0, 5)
    eps = np.asarray(zero_order.neighbours(jax.random.key(1), pivots, config))
    dist = np.linalg.norm(eps.reshape(2, 64, 2) - np.asarray(pivots)[:, None], axis=-1)
    if neighborhood == 'sphere':
      np.testing.assert_allclose(dist, 0.3 * np.sqrt(2), rtol=1e-5)
    else:
      assert np.all(dist <= 0.3 * np.sqrt(2) + 1e-6) and dist.min() < 0.2


def test_zero_order_climbs_and_random_search_keeps_the_best_ode_sample():
  """Both integrate the ODE whatever the sampler's SDE flag; zero_order never loses its
  pivots' reward with zo_keep_pivot; random_search's chains end on the best candidate of all
  their rounds (here checked by re-running every candidate noise through the ODE)."""
  sampler = common.make_sampler('vp', num_steps=6, sde=True)
  kw = dict(budget=6 * 2 * (1 + 3 * 4), num_particles=2, zo_neighbors=4, output='samples')
  zo = common.run('zero_order', sampler, LINEAR, **kw)
  first = np.asarray(zo.trace_best)[0]
  assert int(zo.nfe) == kw['budget'] and np.max(np.asarray(zo.reward)) >= first
  assert np.all(np.diff(np.asarray(zo.trace_best)) >= 0)
  rs = common.run('random_search', sampler, LINEAR, **kw)
  config = search.make_config(common.search_cfg('random_search', **kw), 1.0, 6)
  key = jax.random.key(0)
  init_key, loop_key, _ = jax.random.split(key, 3)
  noises = [jax.random.normal(init_key, (2, 2))]
  for i in range(config.num_rounds):
    noises.append(zero_order.neighbours(jax.random.fold_in(loop_key, i), noises[0], config)
                  .reshape(2, 4, 2).transpose(1, 0, 2).reshape(8, 2))
  every = [np.asarray(LINEAR(zero_order.ode_samples(sampler, e, None))) for e in noises]
  per_chain = np.concatenate([every[0][None]] + [e.reshape(4, 2) for e in every[1:]])
  np.testing.assert_allclose(np.asarray(rs.reward), per_chain.max(axis=0), rtol=1e-5)


def test_linear_particle_schedules_spend_the_budget_as_the_released_baselines():
  sampler = common.make_sampler('vp', num_steps=10)
  expected = (95, 85, 75, 65, 55, 45, 35, 25, 15, 5)
  for method, particles in (('svdd', 1), ('smc', 16)):
    cfg = common.search_cfg(method, budget=500, num_particles=particles,
                            particle_schedule='linear')
    assert search.make_config(cfg, 1.0, 10).schedule == expected
    result = common.run(method, sampler, LINEAR, budget=500, num_particles=particles,
                        particle_schedule='linear')
    assert int(result.nfe) == 500
    np.testing.assert_array_equal(result.trace_nfe, np.cumsum(expected))


@pytest.mark.parametrize('method,overrides,message', [
    ('smc', dict(particle_schedule='cubic'), 'Unknown search.particle_schedule'),
    ('smc', dict(particle_schedule='linear', resample_levels=(2,)), 'resamples at every level'),
    ('smc', dict(particle_schedule='linear', budget=150), 'too small for smc'),
    ('svdd', dict(particle_schedule='linear', budget=90), 'too small for svdd'),
    ('code', dict(particle_schedule='linear'), 'is for svdd and smc'),
    ('tempered_smc', dict(tempering_ess=1.0), r'tempering_ess must lie in \(0, 1\)'),
    ('zero_order', dict(zo_radius=0.0), 'zo_radius must be a positive number'),
    ('zero_order', dict(zo_neighborhood='cube'), 'Unknown search.zo_neighborhood'),
    ('random_search', dict(zo_neighbors=0), 'zo_neighbors must be >= 1'),
    ('zero_order', dict(budget=79), 'too small for zero_order'),
    ('beam', dict(budget=10), 'too small for beam'),
])
def test_bad_knobs_are_refused_before_compiling(method, overrides, message):
  cfg = common.search_cfg(method, **dict(dict(budget=1000, num_particles=4), **overrides))
  with pytest.raises(ValueError, match=message):
    search.make_config(cfg, 1.0, 10)

"""Every method: budget accounting, search quality, bad input and bad knobs refused before
compiling, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewards
import search
from experiments import problem as problem_lib
from models import backbone as backbone_lib
from models import gmm
from rewards import analytic
from tests import helpers
from tests.search import common

TINY = dict(budget=300, num_particles=3, block_size=2)


def _counting_sampler(counter, num_steps=6):
  base = gmm.make_backbone(helpers.mixture_params(), helpers.interpolant('linear'), 'velocity')

  def apply_fn(params, x, t, cond=None):
    jax.debug.callback(lambda n: counter.append(int(n)), x.shape[0])
    return base.apply_fn(params, x, t, cond)
  counting = backbone_lib.Backbone(base.params, apply_fn, base.prediction, base.interpolant,
                                   base.data_shape)
  return common.make_sampler('vp', num_steps=num_steps, backbone=counting)


@pytest.mark.parametrize('method', search.METHODS)
def test_reported_nfe_equals_what_the_backbone_sees(method):
  counter = []
  sampler = _counting_sampler(counter)
  result = common.run(method, sampler, analytic.linear((1.0, 0.5)), **TINY)
  jax.block_until_ready(result)
  assert sum(counter) == int(result.nfe_evaluated)
  assert 0 < int(result.nfe) <= TINY['budget']
  if method != 'rbf':  # rbf's batches also evaluate masked and speculative rows
    assert int(result.nfe) == int(result.nfe_evaluated)
  assert np.all(np.diff(np.asarray(result.trace_nfe)) >= 0)
  assert np.all(np.isfinite(np.asarray(result.reward)))


SEEDS = (0, 1, 2, 3)
QUALITY_REWARD = analytic.gaussian((1.5, 1.0), 0.5)  # a point between two modes


def _mean_best(method, interpolant='vp', **kw):
  sampler = common.make_sampler(interpolant, num_steps=20)
  result = common.run(method, sampler, QUALITY_REWARD, temperature=0.05, seeds=SEEDS,
                      num_particles=8, block_size=3, **kw)
  return float(np.mean(np.asarray(result.trace_best)[:, -1])), result


def test_greedy_methods_beat_best_of_n_at_equal_budget():
  bon, _ = _mean_best('bon', budget=8000)
  for method, kw in (('svdd', {}), ('code', {}), ('rbf', {}), ('dts_star', {'c_uct': 3.0})):
    best, result = _mean_best(method, budget=8000, **kw)
    assert np.all(np.asarray(result.nfe) <= 8000)
    assert best > bon + 0.2, (method, best, bon)


def _diversity(x):
  x = np.asarray(x)
  d = np.sqrt(((x[:, :, None] - x[:, None]) ** 2).sum(-1))
  n = x.shape[1]
  return float(np.mean(d.sum((1, 2)) / (n * (n - 1))))


@pytest.mark.parametrize('method', ('svdd', 'rbf'))
def test_vp_sde_gives_more_diverse_results_than_linear_sde(method):
  _, vp = _mean_best(method, 'vp', budget=2000)
  _, linear = _mean_best(method, 'linear', budget=2000)
  # Measured: ~0.3 vs ~0.08 (svdd) and ~0.37 vs ~0.07 (rbf).
  assert _diversity(vp.x0) > 2 * _diversity(linear.x0)


@pytest.mark.parametrize('method,budget,message', [
    ('bon', 5, 'at least 20 NFEs'),
    ('smc', 30, 'at least 40 NFEs'),
    ('svdd', 50, 'at least 60 NFEs'),
    ('code', 50, 'at least 60 NFEs'),
    ('rbf', 50, 'at least 63 NFEs'),
    ('sop', 20, 'too small for sop'),
    ('dts', 10, 'at least 20 NFEs'),
])
def test_budget_too_small_names_the_smallest(method, budget, message):
  with pytest.raises(ValueError, match=message):
    search.make_config(common.search_cfg(method, budget=budget, num_particles=3), 1.0, 20)


@pytest.mark.parametrize('field,value,message', [
    ('method', 'greedy', 'valid: bon, psp, sop, smc, psi, svdd, code, rbf, dts, dts_star, nts, '
     'tempered_smc, beam, zero_order, random_search, ses'),
    ('potential', 'ratio', 'valid: difference, immediate, max, sum'),
    ('resampling', 'ssp', 'valid: multinomial, systematic, stratified, residual'),
    ('output', 'mean', 'valid: samples, best'),
    ('tree_selection', 'greedy', 'valid: softmax, uniform, uct'),
    ('num_particles', 0, 'positive integer'),
    ('dts_batching', 'eager', 'valid: continuous, synchronous'),
    ('dts_batch', 0, 'search.dts_batch must be a positive integer'),
])
def test_unknown_names_list_the_valid_ones(field, value, message):
  method = 'dts' if field.startswith(('tree_', 'dts_')) else 'smc'
  cfg = common.search_cfg(method)
  cfg[field] = value
  with pytest.raises(ValueError, match=message):
    search.make_config(cfg, 1.0, 20)


def test_reward_of_the_wrong_shape_fails_before_compiling():
  bad = analytic.linear((1.0, 0.5))
  with pytest.raises(ValueError, match=r'returned shape \(3, 1\) for 3 samples'):
    problem_lib.check_reward_shape(
        rewards.stateless('bad', lambda x, c=None: bad(x)[:, None]), (2,))


def test_prompts_are_batched():
  """Independent conditions are vmapped: each prompt's samples go to its own centre."""
  sampler = common.make_sampler('vp', num_steps=10)
  centres = jnp.array([[-3.0, -1.0], [3.0, -1.0], [0.0, 2.5]])
  reward = lambda x0, c: -jnp.sum((x0 - c) ** 2, axis=-1)
  config = search.make_config(common.search_cfg('svdd', budget=400, num_particles=4), 1.0, 10)
  keys = jax.random.split(jax.random.key(0), 3)
  result = jax.jit(lambda k, c: search.run_batched('svdd', k, sampler, reward, config, c))(
      keys, centres)
  assert result.x0.shape == (3, 4, 2)
  x = np.asarray(result.x0)                                           # [prompt, chain, 2]
  dist = np.linalg.norm(x[:, :, None, :] - np.asarray(centres)[None, None], axis=-1)
  np.testing.assert_array_equal(np.argmin(dist, axis=-1), np.arange(3)[:, None].repeat(4, 1))


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

"""RBF: the default is the released code's control flow; the variants; parallel proposals.

The equivalence test runs search/rbf.py against tests/search/rbf_reference.py, a host loop
transliterated line by line from the authors' rbf/rbf.py, on the same sampler and noise keys,
and requires the same choices (proposals drawn and taken, per chain and level), the same NFEs
and the same outputs (to float32 rounding: the reference batches the arithmetic differently).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewards
import search
from rewards import analytic
from search import rbf
from tests.search import common
from tests.search import rbf_reference

REWARD = analytic.gaussian((1.5, 1.0), 0.5)
# An integer reward, like the paper's count error: ties are common, so the strict comparisons
# (a proposal must beat r*; the level's first best is kept) are exercised.
ROUNDED = rewards.stateless('rounded', lambda x0, cond: jnp.round(2.0 * x0[:, 0] + x0[:, 1]))

# (chains N, K0, budget B, steps M, seed): the paper's setting, then one chain, no initial
# search (the released code with one initial noise), odd budgets and counts.
CASES = [(2, 25, 500, 10, 0), (2, 25, 500, 10, 1), (2, 25, 500, 10, 2), (1, 25, 500, 10, 3),
         (2, 0, 500, 10, 4), (3, 7, 433, 8, 5), (3, 2, 97, 5, 6), (4, 25, 1001, 10, 7)]
CASES = [c + (REWARD,) for c in CASES] + [(2, 25, 500, 10, 8, ROUNDED), (3, 4, 301, 6, 9, ROUNDED)]


def _ours(n, k0, budget, steps, seed, parallel=1, reward=REWARD):
  sampler = common.make_sampler('vp', num_steps=steps)
  cfg = common.search_cfg('rbf', budget=budget, num_particles=n, rbf_init_candidates=k0,
                          rbf_parallel=parallel, output='best')
  config = search.make_config(cfg, 1.0, steps)
  key = jax.random.key(seed)
  chains = jax.jit(lambda k: rbf.run_chains(k, sampler, reward, config, None, 0, n))(key)
  result = jax.jit(lambda k: rbf.run(k, sampler, reward, config, None))(key)
  return sampler, chains, result


@pytest.mark.parametrize('n,k0,budget,steps,seed,reward', CASES)
def test_default_rbf_is_the_released_loop(n, k0, budget, steps, seed, reward):
  sampler, chains, result = _ours(n, k0, budget, steps, seed, reward=reward)
  ref = rbf_reference.released_rbf(jax.random.key(seed), sampler, reward, None, n, budget,
                                   max(k0, 1))
  drawn, taken = np.asarray(chains.drawn), np.asarray(chains.taken)
  for (b, level), count in ref['drawn'].items():
    assert drawn[b, level] == count, (b, level)
    assert taken[b, level] == ref['taken'][b, level], (b, level)
  # Every chain left every level once and ended on the last (M - 2, into M - 1).
  assert sorted(ref['drawn']) == [(b, k) for b in range(n) for k in range(steps - 1)]
  assert int(result.nfe) == ref['nfe'] == int(chains.nfe)
  # The same arithmetic, batched differently (the reference evaluates all chains at once, each
  # at its own level), over up to M - 1 stochastic steps: equal to float32 rounding (measured
  # <= 7.4e-6 relative with jax 0.12.1, where XLA fuses these batches differently from 0.10).
  np.testing.assert_allclose(np.asarray(chains.x0), ref['tweedies'], rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(chains.r), ref['rewards'], rtol=2e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(result.x0), ref['x0'], rtol=2e-5, atol=1e-6)


def test_the_paper_setting_spends_498_of_500():
  """N = 2, K0 = 25, M = 10: quota (500 - 50) // 20 = 22; 50 + 2 * 224 = 498 NFE."""
  cfg = common.search_cfg('rbf', budget=500, num_particles=2)
  config = search.make_config(cfg, 1.0, 10)
  assert (config.init_candidates, config.quota, config.draws, config.absorb) == (25, 22, 224,
                                                                                 True)
  _, chains, result = _ours(2, 25, 500, 10, 0)
  assert int(result.nfe) == 498 and np.asarray(chains.drawn).sum() == 448
  assert result.x0.shape[0] == 1    # the best chain's output, as the released code returns


def test_small_budgets_search_fewer_initial_noises():
  """Below N (25 + M) the released K0 = 25 leaves no quota (its code stops); the default then
  takes the largest K0 that leaves one proposal per level, and an explicit K0 is kept."""
  sizes = lambda **kw: search.make_config(common.search_cfg(
      'rbf', **dict(dict(num_particles=2), **kw)), 1.0, 10)
  assert sizes(budget=70).init_candidates == 25 and sizes(budget=69).init_candidates == 24
  assert (sizes(budget=50).init_candidates, sizes(budget=50).quota) == (15, 1)
  assert sizes(budget=50, rbf_init_candidates=2).init_candidates == 2
  assert sizes(budget=500, rbf_variant='literal').init_candidates == 1


def test_zero_initial_candidates_is_one_unsearched_noise():
  """rbf_init_candidates = 0 and = 1 are the same run: one initial noise per chain."""
  _, zero, _ = _ours(2, 0, 300, 6, 0)
  _, one, _ = _ours(2, 1, 300, 6, 0)
  np.testing.assert_array_equal(zero.x0, one.x0)
  np.testing.assert_array_equal(zero.drawn, one.drawn)


@pytest.mark.parametrize('variant,budget,k0', (('released', 500, 25), ('literal', 600, None),
                                                ('released', 433, 3)))
def test_parallel_proposals_choose_what_sequential_chooses(variant, budget, k0):
  sampler = common.make_sampler('vp', num_steps=12)
  kw = dict(budget=budget, num_particles=4, rbf_variant=variant, output='samples')
  if k0 is not None:
    kw['rbf_init_candidates'] = k0
  sequential = common.run('rbf', sampler, REWARD, rbf_parallel=1, **kw)
  parallel = common.run('rbf', sampler, REWARD, rbf_parallel=4, **kw)
  np.testing.assert_array_equal(sequential.x0, parallel.x0)
  np.testing.assert_array_equal(sequential.reward, parallel.reward)
  assert int(sequential.nfe) == int(parallel.nfe)
  np.testing.assert_array_equal(sequential.trace_nfe, parallel.trace_nfe)
  assert int(parallel.nfe_evaluated) >= int(parallel.nfe)


def test_literal_variant_drops_the_last_levels_rollover():
  """The paper's Alg. 2 read literally: the quota rolled over to the last level is dropped, so
  on a reward that improves easily (a linear one: almost every proposal beats r*) most of the
  budget goes unspent; absorbing it (the released last level) spends it."""
  sampler = common.make_sampler('vp', num_steps=8)
  easy = analytic.linear((1.0, 0.5))
  kw = dict(budget=1003, num_particles=4, rbf_variant='literal', output='samples')
  literal = common.run('rbf', sampler, easy, **kw)
  absorbed = common.run('rbf', sampler, easy, rbf_last_level='absorb', **kw)
  n, c0 = 4, 1
  draws = -(-(1003 - n * c0) // n) - 1
  assert int(absorbed.nfe) == n * (c0 + draws)
  assert int(literal.nfe) < int(absorbed.nfe) // 10
  config = search.make_config(common.search_cfg('rbf', **kw), 1.0, 8)
  assert (config.init_candidates, config.quota, config.absorb) == (1, (1003 - 4) // (7 * 4),
                                                                   False)


@pytest.mark.parametrize('overrides,match', (
    (dict(rbf_variant='paper'), r"Unknown search.rbf_variant 'paper'; valid: released, literal"),
    (dict(rbf_last_level='all'), r"Unknown search.rbf_last_level 'all'; valid: absorb, quota"),
    (dict(rbf_init_candidates=-1), r'rbf_init_candidates must be an integer >= 0'),
    (dict(rbf_quota_divisor=0), r'rbf_quota_divisor must be an integer >= 1'),
    (dict(rbf_quota_divisor=2), r'use a divisor of at least 9'),
    (dict(rbf_parallel=0), r'rbf_parallel must be an integer >= 1'),
    (dict(budget=20), r'budget=20 is too small for rbf: it needs at least 22 NFEs'),
))
def test_bad_settings_are_refused_by_name(overrides, match):
  cfg = common.search_cfg('rbf', **dict(dict(budget=500, num_particles=2), **overrides))
  with pytest.raises(ValueError, match=match):
    search.make_config(cfg, 1.0, 10)

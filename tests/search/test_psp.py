"""Progressive seed pruning (search/psp.py): its schedule spends best-of-N's compute, and its
stages keep exactly the best seeds, whose paths are those they would have had unpruned."""

import jax
import numpy as np
import pytest

import search
from configs import gmm2d
from experiments import problem as problem_lib
from search import base
from search import psp


def _config(budget, num_steps=8, **knobs):
  config = gmm2d.get_config('quick,psp')
  config.sampler.num_steps = num_steps
  config.search.update(budget=budget, **knobs)
  return config


def test_the_default_schedule_runs_at_best_of_n_compute():
  """2 N-bar seeds for a quarter of the levels, N-bar for a quarter, N-bar / 2 for the half."""
  config = _config(8 * 4)
  method_config = search.make_config(config.search, 1.0, 8)
  assert (method_config.nbar, method_config.counts, method_config.ends) == (4, (8, 4, 2),
                                                                            (1, 3, 7))
  assert psp.cost(method_config.counts, method_config.ends) == 8 * 4
  # A budget between two N-bars takes the smaller.
  assert search.make_config(_config(8 * 4 + 5).search, 1.0, 8).nbar == 4


def test_each_stage_keeps_the_best_seeds_on_their_own_paths():
  config = _config(8 * 8)
  problem = problem_lib.build(config)
  sampler, reward = problem.sampler, problem.reward
  method_config = search.make_config(config.search, 1.0, 8)
  counts, ends = method_config.counts, method_config.ends
  key = jax.random.key(2)
  result = jax.jit(lambda k: psp.run(k, sampler, reward, method_config))(key)
  assert int(result.nfe) == psp.cost(counts, ends) == 64

  # Every seed run to the end unpruned, with the same noise; the pruning redone by hand.
  init_key, loop_key, _ = jax.random.split(key, 3)

  @jax.jit
  def unpruned():
    x, d, ids = psp.init(init_key, sampler, method_config)
    rewards, x0 = [], None
    start = 0
    for end in ends:
      x, d = psp.advance(x, d, ids, start, end, loop_key, sampler)
      rewards.append(reward(d.x0, None))
      start, x0 = end, d.x0
    return rewards, x0

  rewards, x0 = unpruned()
  alive = np.arange(counts[0])
  for j in range(1, len(counts)):
    r = np.asarray(rewards[j - 1])[alive]
    alive = alive[np.argsort(-r, kind='stable')[:counts[j]]]
  final = np.asarray(rewards[-1])[alive]
  best = alive[np.argmax(final)]
  np.testing.assert_allclose(float(result.reward[0]), final.max(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(result.x0[0]), np.asarray(x0)[best], rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize('knobs,message', [
    (dict(psp_multipliers=(1.0, 2.0)), 'strictly decreasing positive'),
    (dict(psp_stages=(0.5,)), 'must be 2 strictly increasing fractions'),
    (dict(psp_stages=(0.2, 0.25)), 'put two prunings at one level'),
])
def test_bad_schedules_are_named(knobs, message):
  with pytest.raises(ValueError, match=message):
    search.make_config(_config(800, **knobs).search, 1.0, 8)


def test_too_small_a_budget_names_the_smallest():
  with pytest.raises(ValueError, match=r'psp: it needs at least 16 NFEs'):
    search.make_config(_config(15).search, 1.0, 8)


def test_counts_that_do_not_divide_over_the_particle_axis_are_named():
  method_config = search.make_config(_config(8 * 4).search, 1.0, 8)
  with pytest.raises(ValueError, match=r'psp runs rows that do not divide over the 4 devices of '
                     r"the mesh's particle axis: 2 \(stage 2\)"):
    base.check_divides('psp', {f'stage {j}': c for j, c in enumerate(method_config.counts)}, 4)

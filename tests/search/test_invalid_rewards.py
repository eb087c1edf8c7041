"""Invalid rewards (NaN or infinite) for every method: an invalid proposal is never selected or
drawn while a valid one exists, the valid ones keep their weights (SMC stays exact), and
`all_invalid` means the same for every method (docs/reliability.md, "Invalid rewards")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import search
from experiments.evaluation import metrics
from models import gmm
from rewards import analytic
from tests import helpers
from tests.search import common

# Which rows a method selects or draws is plumbing: XLA's optimisations only cost compile time.
pytestmark = pytest.mark.usefixtures('fast_compilation')

LINEAR = analytic.linear((1.0, 0.5))
WEIGHTED = ('bon', 'smc', 'dts')  # methods whose `samples` output is a weighted draw


def nan_right_half(x0, cond=None):
  """NaN for x > 2 (most of the right-hand mode) and +inf for y > 3.5; linear elsewhere."""
  r = LINEAR(x0, cond)
  r = jnp.where(x0[:, 0] > 2.0, jnp.nan, r)
  return jnp.where(x0[:, 1] > 3.5, jnp.inf, r)


def all_nan(x0, cond=None):
  return jnp.full(x0.shape[:1], jnp.nan)


def _run(method, reward, output, budget=800):
  sampler = common.make_sampler('vp', num_steps=8)
  return common.run(method, sampler, reward, budget=budget, num_particles=8, output=output,
                    block_size=3)


# Beam search's global selection drives all 8 beams onto the edge of the invalid half-plane:
# here every one of the 112 children of its last level is invalid (measured), so no valid
# candidate is left to output. Its rule, valid children before invalid ones, is checked below.
COLLAPSES = ('beam',)


@pytest.mark.parametrize('method', search.METHODS)
def test_partly_invalid_rewards_are_never_output(method):
  outputs = ('best', 'samples') if method in WEIGHTED else ('best',)
  for output in outputs:
    result = _run(method, nan_right_half, output)
    invalid, scored = int(result.num_invalid), int(result.num_scored)
    assert 0 < invalid < scored, (output, invalid, scored)
    if method in COLLAPSES:
      assert not np.any(np.isfinite(np.asarray(result.reward)))
      continue
    x = np.asarray(result.x0)
    assert np.all(np.isfinite(np.asarray(result.reward))), output
    assert np.all(x[:, 0] <= 2.0) and np.all(x[:, 1] <= 3.5), (output, x)


@pytest.mark.parametrize('method', search.METHODS)
def test_all_invalid_means_every_scored_proposal_was_invalid(method):
  result = _run(method, all_nan, 'best' if method == 'dts_star' else 'samples')
  assert int(result.num_invalid) == int(result.num_scored) > 0
  x = np.asarray(result.x0)
  # Outputs are real samples of the base sampler, never unused slots of a buffer (DTS's tree).
  assert np.all(np.linalg.norm(x, axis=1) > 0) and np.all(np.isfinite(x)), x
  assert not np.any(np.isfinite(np.asarray(result.reward)))


def test_smc_samples_the_target_when_early_estimates_are_invalid():
  """NaN in a ball around the data mean: at high noise every particle's Tweedie estimate lies
  in it, so every early reward is invalid, while the data (and the tilted target) have ~no
  mass there. SMC must still sample the tilted target, not the untilted base."""
  params = helpers.mixture_params()
  centre = np.asarray(helpers.WEIGHTS) @ np.asarray(helpers.MEANS)    # the data mean

  def nan_ball(x0, cond=None):
    r = LINEAR(x0, cond)
    return jnp.where(jnp.sum((x0 - centre) ** 2, axis=-1) < 1.0, jnp.nan, r)

  sampler = common.make_sampler('vp', num_steps=40)
  result = common.run('smc', sampler, nan_ball, budget=40 * 2000, num_particles=2000,
                      resampling='systematic', ess_threshold=0.5)
  x = np.asarray(result.x0)
  assert np.all(np.isfinite(np.asarray(result.reward)))
  assert int(result.num_invalid) >= 2000  # level 0: all of them
  exact = np.asarray(gmm.sample(gmm.tilt_linear(params, (1.0, 0.5), 0.0, 1.0),
                                jax.random.key(5), 4000))
  untilted = np.asarray(gmm.sample(params, jax.random.key(6), 4000))
  ed = float(metrics.energy_distance(x, exact))
  # Measured: ~0.005 against the tilted target; the untilted base is >= 0.3 away.
  assert ed < 0.02 < float(metrics.energy_distance(x, untilted)), ed


def test_smc_draws_only_valid_particles_when_some_end_valid():
  """NaN on the half-plane x < 0.5: early estimates (near the data mean, x = 0.3) are invalid,
  and only particles that reach the right-hand mode end valid. Every draw must be one of them,
  with the tilt intact (the right-hand mode's weight under the tilted target)."""
  def nan_left(x0, cond=None):
    return jnp.where(x0[:, 0] < 0.5, jnp.nan, LINEAR(x0, cond))

  sampler = common.make_sampler('vp', num_steps=8)
  result = common.run('smc', sampler, nan_left, budget=8 * 64, num_particles=64,
                      ess_threshold=0.5)
  assert int(result.num_invalid) > 64   # all of level 0, and more
  assert np.all(np.isfinite(np.asarray(result.reward)))
  assert np.all(np.asarray(result.x0)[:, 0] >= 0.5)
  assert len(np.unique(np.asarray(result.x0), axis=0)) > 8  # not one particle drawn 64 times


@pytest.mark.parametrize('reward,all_invalid', [(all_nan, True), (nan_right_half, False)])
def test_metrics_report_what_was_invalid(tmp_path, reward, all_invalid):
  from configs import gmm2d  # pylint: disable=g-import-not-at-top
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  config = gmm2d.get_config('code,quick')
  problem, method_config, mesh = search_exp.prepare(config)
  problem = problem._replace(reward=problem.reward.replace(fn=lambda _, x0, c=None: reward(x0)))
  metrics, _ = search_exp.execute(config, str(tmp_path), problem, method_config, mesh)
  assert (metrics.get('all_invalid') == 1) == all_invalid
  assert (metrics['num_invalid'] == metrics['num_scored']) == all_invalid
  if all_invalid:  # no valid output: no reward statistics to report
    assert metrics['num_invalid_outputs'] == metrics['num_outputs']
    assert 'reward_mean' not in metrics and 'best_reward' not in metrics
  else:
    assert 0 < metrics['num_invalid'] < metrics['num_scored']
    assert np.isfinite(metrics['reward_mean']) and np.isfinite(metrics['best_reward'])


def test_beam_keeps_invalid_children_only_when_valid_ones_run_out():
  from search import beam  # pylint: disable=g-import-not-at-top
  r = jnp.asarray([1.0, -jnp.inf, 3.0, 2.0, -jnp.inf, 0.5])
  assert set(np.asarray(beam.select(r, 3)).tolist()) == {2, 3, 0}
  five = np.asarray(beam.select(r, 5)).tolist()
  assert set(five[:4]) == {2, 3, 0, 5} and five[4] in (1, 4)   # the valid ones first

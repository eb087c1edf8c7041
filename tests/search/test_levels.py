"""The level-by-level driver (search/levels.py): the trace, the invalid count and the extras it
builds from a method's reports, for scanned and unrolled segments alike."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import common as configs_common
from samplers.sampler import Denoised
from search import base
from search import levels


def _common(output='best'):
  cfg = configs_common.search_config(method='smc', budget=100, num_particles=2, output=output)
  return base.Common.from_config(cfg, 1.0)


def _step(state, x):
  """A toy level: four particles' rewards are x + row (the last row invalid when x is odd);
  the report's extra is x itself."""
  rewards = x + jnp.arange(4.0)
  bad = jnp.asarray([0, 0, 0, 1]) * (x % 2).astype(jnp.int32)
  rewards = jnp.where(bad == 1, -jnp.inf, rewards)
  x0 = jnp.stack([rewards, rewards], axis=1)   # [4, 2]: a sample's coordinates = its reward
  d = Denoised(x0, x0, x0)
  return levels.Chains(state.x + 1, d, rewards), levels.Report(rewards, bad, x)


def test_drive_builds_the_trace_counts_and_extras_of_every_segment():
  first = levels.Report(jnp.asarray([5.0, 1.0, -jnp.inf, 0.0]), jnp.asarray(1))
  zeros = jnp.zeros((4, 2))
  state = levels.Chains(jnp.zeros(4), Denoised(zeros, zeros, zeros), jnp.zeros(4))
  segments = [levels.Segment(_step, jnp.asarray([0.0, 4.0, 1.0])),
              levels.Segment(_step, [jnp.asarray(9.0)], unrolled=True)]
  result, extras = jax.jit(lambda key: levels.drive(
      key, _common(), state, first, segments, levels.chains_output,
      costs=[4, 8, 8, 8, 2], scored=16))(jax.random.key(0))
  # Level bests: 5 (the first), 3, 7, 3 (row 3 of x = 1 is invalid), 11 (x = 9, likewise): the
  # trace is their running max.
  np.testing.assert_array_equal(result.trace_best, [5.0, 5.0, 7.0, 7.0, 11.0])
  np.testing.assert_array_equal(result.trace_nfe, [4, 12, 20, 28, 30])
  assert int(result.nfe) == 30 and int(result.nfe_evaluated) == 30
  assert int(result.num_invalid) == 1 + 1 + 1 and int(result.num_scored) == 16
  # `best` outputs the final state's argmax: x = 9, rewards 9, 10, 11 and an invalid one.
  assert float(result.reward[0]) == 11.0 and result.x0.tolist() == [[11.0, 11.0]]
  np.testing.assert_array_equal(extras[0], [0.0, 4.0, 1.0])
  assert [float(e) for e in extras[1]] == [9.0]


def test_drive_weights_the_samples_output_by_the_finish():
  """With log-weights, `samples` draws num_particles from the final state by weight: here all
  weight on row 2."""
  state = levels.Chains(jnp.zeros(4), None, jnp.zeros(4))
  finish = lambda s: levels.Output(jnp.arange(4.0)[:, None], jnp.arange(4.0),
                                   jnp.asarray([-jnp.inf, -jnp.inf, 0.0, -jnp.inf]))
  result, _ = levels.drive(jax.random.key(1), _common('samples'), state,
                           levels.Report(jnp.zeros(4), jnp.zeros(4, jnp.int32)), [], finish,
                           costs=[4], scored=4)
  np.testing.assert_array_equal(result.x0[:, 0], [2.0, 2.0])
  np.testing.assert_array_equal(result.trace_nfe, [4])

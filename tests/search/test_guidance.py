"""DPS-style gradient guidance, alone and combined with svdd and rbf."""

import jax
import numpy as np
import pytest

import rewards
from configs import gmm2d
from experiments import search as search_exp
from rewards import analytic
from tests.search import common

REWARD = rewards.stateless('gaussian', analytic.gaussian((1.5, 1.0), 0.75))


def test_guidance_moves_samples_towards_the_reward():
  plain = common.make_sampler('vp', num_steps=20)
  guided = plain.replace(guidance=REWARD, guidance_scale=1.0)
  key = jax.random.key(0)
  r_plain = REWARD(plain.sample(key, 512).x0).mean()
  r_guided = REWARD(guided.sample(key, 512).x0).mean()
  assert float(r_guided) > float(r_plain) + 0.5


@pytest.mark.parametrize('method', ('svdd', 'rbf'))
def test_guidance_combines_with_greedy_search(method):
  """The guided kernel is used in the loop, and search adds to what guidance alone gives."""
  plain = common.make_sampler('vp', num_steps=10)
  guided = plain.replace(guidance=REWARD, guidance_scale=1.0)
  a = common.run(method, plain, REWARD, budget=400, num_particles=4)
  b = common.run(method, guided, REWARD, budget=400, num_particles=4)
  assert 0 < int(b.nfe) <= 400
  assert not np.allclose(a.x0, b.x0)
  guided_alone = REWARD(guided.sample(jax.random.key(0), 64).x0)
  assert float(np.max(b.trace_best)) > float(np.mean(guided_alone))


def test_guidance_is_built_from_the_config_and_needs_a_differentiable_reward():
  config = gmm2d.get_config('svdd,quick')
  config.search.guidance = True
  problem, _, _ = search_exp.prepare(config)
  assert problem.sampler.guidance is not None
  assert problem.sampler.guidance_scale == 1.0 / config.reward.temperature
  # A host-callback reward has no gradient: refused before anything compiles.
  from rewards import host
  with pytest.raises(ValueError, match='needs a differentiable reward'):
    rewards.check_differentiable(
        rewards.stateless('host', host.host_reward(lambda x: x.sum(-1))), (2,))

"""NTS's ε-greedy search (search/nts.py) against a transliteration of the reference's control
flow (tests/search/nts_reference.py) on the same draws, step and scorer."""

import jax
import numpy as np
import pytest

import search
from configs import gmm2d
from experiments import problem as problem_lib
from search import nts
from tests.search import nts_reference


def _config(budget, num_steps=5, **knobs):
  config = gmm2d.get_config('quick,nts')
  config.sampler.num_steps = num_steps
  config.search.update(budget=budget, num_particles=1, **knobs)
  return config


@pytest.mark.parametrize('eps', [0.4, 0.0, 1.0])
def test_the_search_follows_the_reference_control_flow(eps):
  m, c, k = 5, 4, 3
  config = _config(1 + (m - 1) * c * k, m, nts_candidates=c, nts_eps=eps)
  problem = problem_lib.build(config)
  sampler, reward = problem.sampler, problem.reward
  method_config = search.make_config(config.search, 1.0, m)
  assert method_config.num_rounds == k
  key = jax.random.key(7)
  result = jax.jit(lambda key: nts.run(key, sampler, reward, method_config))(key)
  assert int(result.nfe) == 1 + (m - 1) * c * k

  # The draws nts.run makes, rebuilt from its keys, in the reference's terms.
  init_key, loop_key, _ = jax.random.split(key, 3)
  x = sampler.init_noise(init_key, 1)

  def draws(i, r):
    level_key = jax.random.fold_in(loop_key, i)
    k_dir, k_len, k_fresh, k_pick = jax.random.split(jax.random.fold_in(level_key, r), 4)
    shape = (c, 2)
    return dict(pivot=np.asarray(jax.random.normal(jax.random.fold_in(level_key, k), (1, 2)))[0],
                rand=np.asarray(jax.random.uniform(k_pick, (c,))),
                direction=np.asarray(jax.random.normal(k_dir, shape)),
                scale=np.asarray(jax.random.uniform(k_len, (c,))),
                fresh=np.asarray(jax.random.normal(k_fresh, shape)))

  d0 = sampler.denoise(x, 0)

  @jax.jit
  def step_fn(x_cur, i, noises):
    xs = jax.numpy.repeat(x_cur[None], noises.shape[0], axis=0)
    ds = sampler.denoise(xs, i)
    x_new = sampler.step(xs, ds, i, noises.astype(xs.dtype))
    return x_new, sampler.denoise(x_new, i + 1).x0

  x0 = nts_reference.eps_greedy(
      np.asarray(x[0]), m - 1, lambda xc, i, z: tuple(map(np.asarray, step_fn(xc, i, z))),
      lambda x0: np.asarray(reward(x0, None)), draws, N=c, K=k, eps=eps, lambda_param=0.15)
  assert d0.x0.shape == (1, 2)
  np.testing.assert_allclose(np.asarray(result.x0[0]), x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('knobs,message', [
    (dict(nts_candidates=0), 'nts_candidates must be >= 1'),
    (dict(nts_eps=1.5), r'nts_eps must lie in \[0, 1\]'),
    (dict(nts_radius=-1.0), 'nts_radius must be a non-negative'),
    (dict(nts_iterations=50), 'too small for nts: it needs at least 801 NFEs'),
])
def test_bad_settings_are_named(knobs, message):
  with pytest.raises(ValueError, match=message):
    search.make_config(_config(100, **knobs).search, 1.0, 5)

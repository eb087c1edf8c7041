"""Zero-order and random search over initial noise (search/zero_order.py): the neighbourhoods,
the climb, and random search's best-of-every-round."""

import jax
import numpy as np

import search
from rewards import analytic
from search import zero_order
from tests.search import common

LINEAR = analytic.linear((1.0, 0.5))


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

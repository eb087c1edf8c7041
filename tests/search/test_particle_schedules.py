"""The decaying particle schedule of the RBF authors' released SMC and SVDD
(search.particle_schedule = linear): the same counts per level, the whole budget spent."""

import numpy as np

import search
from rewards import analytic
from tests.search import common

LINEAR = analytic.linear((1.0, 0.5))


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

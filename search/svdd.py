"""SVDD (Li et al. 2024): each of N chains draws K children from the base kernel at every level
and keeps the one whose Tweedie estimate has the highest reward (the alpha -> 0 limit of
sampling children in proportion to exp(v / alpha)). It is CoDe with block size 1.

search.particle_schedule = linear spends the budget as the RBF authors' released SVDD does:
K_k = c (2 (M - k) - 1) candidates per chain at level k = 0..M-1, c = budget // (N M^2), so
one chain at 500 NFE and 10 steps draws 95, 85, ..., 5. Level 0's K_0 candidates are initial
noises (the chain starts from the best); the others are children, as above.
"""

import dataclasses
import functools

import jax

from search import base
from search import code
from search import levels


METHOD = base.Method(knobs=dict(particle_schedule='constant'),   # constant | linear
                     particle_field='num_chains', order=3, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config(code.Config):

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    if base.particle_schedule(cfg) == 'constant':
      return cls.sized(cfg, temperature, num_steps, method, 1)
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    n = common.num_particles
    schedule = base.linear_schedule(common.budget // n, num_steps)
    if not schedule:
      raise base.too_small(method.name, common.budget, n * num_steps ** 2,
                           f'a linear schedule of {n} chains over {num_steps} levels')
    return cls(common, n, schedule[0], 1, schedule)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  if config.schedule:
    return _run_scheduled(key, sampler, reward, config, cond)
  return code.run(key, sampler, reward, config, cond)


def init_scheduled(key, sampler, reward, config: Config, cond=None):
  """(State, Report): each chain starts from the best of its K_0 initial noises."""
  x = sampler.init_noise(key, config.num_chains * config.schedule[0])
  d = sampler.denoise(x, 0, cond)
  rs, bad = base.score_rows(reward, d.x0, cond)
  x, d, r = base.best_in_groups((x, d, rs), rs, config.schedule[0])
  return code.State(x, d, r), levels.Report(rs, bad)


def step_scheduled(state: code.State, k, loop_key, sampler, reward, config: Config, cond=None):
  """Level k -> k + 1 with K_{k+1} children per chain, the best kept."""
  kc = config.schedule[k + 1]
  xs, ds, rs, bad = base.children(jax.random.fold_in(loop_key, k), sampler, reward, cond, k,
                                  state.x, state.d, kc)
  x, d, r = base.best_in_groups((xs, ds, rs), rs, kc)
  return code.State(x, d, r), levels.Report(rs, bad)


def _run_scheduled(key, sampler, reward, config: Config, cond):
  """SVDD with K_k candidates per chain at level k; the levels are unrolled (their shapes
  differ)."""
  costs = [config.num_chains * c for c in config.schedule]
  init_key, loop_key = jax.random.split(key)
  state, first = init_scheduled(init_key, sampler, reward, config, cond)
  advance = functools.partial(step_scheduled, loop_key=loop_key, sampler=sampler,
                              reward=reward, config=config, cond=cond)
  return levels.drive(key, config.common, state, first,
                      [levels.Segment(advance, range(len(costs) - 1), unrolled=True)],
                      levels.chains_output, costs=costs, scored=sum(costs))[0]


rows = code.rows   # each chain's candidates, evaluated together

"""CoDe (Singh et al. 2025): greedy block-wise selection among K rolled-out candidates.

Each of N chains, at the start of every block of L levels, draws K candidates from the base
kernel and rolls each L levels forward (one NFE per level per candidate); the chain keeps the
candidate with the highest reward of its Tweedie estimate at the block's end. The chain's first
evaluation at level 0 costs N NFEs; levels 1..M-1 cost K per chain each, so
K = (budget - N) // (N (M - 1)). L = 1 is SVDD.
"""

import dataclasses
import functools
import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import levels

METHOD = base.Method(
    knobs=dict(block_size=5),       # L levels rolled out per candidate before selection
    particle_field='num_chains', order=4, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int
  num_candidates: int  # K, from the budget
  block_size: int      # L
  schedule: tuple = ()  # svdd's linear particle schedule: candidates per chain per level

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    if base.particle_schedule(cfg) != 'constant':
      raise ValueError(f'search.particle_schedule={cfg.particle_schedule} is for svdd and smc; '
                       'code rolls its candidates out in blocks.')
    return cls.sized(cfg, temperature, num_steps, method, int(cfg.block_size))

  @classmethod
  def sized(cls, cfg, temperature, num_steps, method, block: int):
    """The config with block size L (SVDD: L = 1 whatever search.block_size says)."""
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    if block < 1:
      raise ValueError(f'search.block_size must be >= 1, got {block}.')
    n = common.num_particles
    k = (common.budget - n) // (n * (num_steps - 1))
    if k < 1:
      raise base.too_small(method.name, common.budget, n * num_steps,
                           f'{n} chains x {num_steps} steps with one candidate each')
    return cls(common, n, k, block)


State = levels.Chains   # the chains between blocks (the scan's carry)


def init(key, sampler, reward, config: Config, cond=None):
  """(State, Report) of N chains evaluated at level 0."""
  x = sampler.init_noise(key, config.num_chains)
  d = sampler.denoise(x, 0, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  return State(x, d, r), levels.Report(r, bad)


def step(state: State, start, length: int, loop_key, sampler, reward, config: Config,
         cond=None):
  """The block of `length` levels from level `start`: each chain's K candidates rolled out
  through it, the best kept. Per-chain bookkeeping only: the reductions over chains wait until
  after the loop, so a chain's whole block runs on its own device with no collective."""
  n, kc = config.num_chains, config.num_candidates
  xs, ds = sharding.rows(base.repeat_rows((state.x, state.d), kc))
  block_key = jax.random.fold_in(loop_key, start)

  def level(j, carry):
    xs, ds = carry
    noise = jax.random.normal(jax.random.fold_in(block_key, j), xs.shape, xs.dtype)
    xs = sampler.step(xs, ds, start + j, noise)
    return sharding.rows((xs, sampler.denoise(xs, start + j + 1, cond)))

  xs, ds = jax.lax.fori_loop(0, length, level, (xs, ds))
  rs, bad = base.score_rows(reward, ds.x0, cond)
  x, d, r = base.best_in_groups((xs, ds, rs), rs, kc)
  return State(x, d, r), levels.Report(r, bad.reshape(n, kc).sum(axis=1))


finish = levels.chains_output


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  """Blocks cover levels 0 -> M-1: full blocks of L levels, then one shorter remainder."""
  n, kc, m, block = config.num_chains, config.num_candidates, sampler.num_steps, config.block_size
  init_key, loop_key = jax.random.split(key)
  state, first = init(init_key, sampler, reward, config, cond)
  num_full, rest = divmod(m - 1, block)
  advance = lambda length: functools.partial(step, length=length, loop_key=loop_key,
                                             sampler=sampler, reward=reward, config=config,
                                             cond=cond)
  segments = []
  if num_full:
    segments.append(levels.Segment(advance(block), block * jnp.arange(num_full)))
  if rest:
    segments.append(levels.Segment(advance(rest), [num_full * block], unrolled=True))
  blocks = num_full + (1 if rest else 0)
  costs = [n] + [n * kc * block] * num_full + ([n * kc * rest] if rest else [])
  # Rewards are scored at block ends.
  return levels.drive(key, config.common, state, first, segments, finish, costs=costs,
                      scored=n + n * kc * blocks)[0]


def rows(config: Config) -> int:
  """Each chain's candidates (at the widest level of a schedule), evaluated together."""
  return config.num_chains * (max(config.schedule) if config.schedule else config.num_candidates)

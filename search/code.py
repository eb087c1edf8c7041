"""CoDe (Singh et al. 2025): greedy block-wise selection among K rolled-out candidates.

Each of N chains, at the start of every block of L levels, draws K candidates from the base
kernel and rolls each L levels forward (one NFE per level per candidate); the chain keeps the
candidate with the highest reward of its Tweedie estimate at the block's end. The chain's first
evaluation at level 0 costs N NFEs; levels 1..M-1 cost K per chain each, so
K = (budget - N) // (N (M - 1)). L = 1 is SVDD.
"""

import dataclasses

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base

METHOD = base.Method(
    knobs=dict(block_size=5),       # L levels rolled out per candidate before selection
    particle_field='num_chains', order=4)


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


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kc, m = config.num_chains, config.num_candidates, sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  x = sampler.init_noise(init_key, n)
  d = sampler.denoise(x, 0, cond)
  r, invalid = base.score_rows(reward, d.x0, cond)

  # Blocks cover levels 0 -> M-1: full blocks of L levels, then one shorter remainder.
  num_full, rest = divmod(m - 1, config.block_size)

  def block(carry, start, length):
    x, d, r, invalid = carry
    xs, ds = sharding.rows(base.repeat_rows((x, d), kc))
    block_key = jax.random.fold_in(loop_key, start)

    def level(j, state):
      xs, ds = state
      noise = jax.random.normal(jax.random.fold_in(block_key, j), xs.shape, xs.dtype)
      xs = sampler.step(xs, ds, start + j, noise)
      return sharding.rows((xs, sampler.denoise(xs, start + j + 1, cond)))

    xs, ds = jax.lax.fori_loop(0, length, level, (xs, ds))
    rs, bad = base.score_rows(reward, ds.x0, cond)
    x, d, r = base.best_in_groups((xs, ds, rs), rs, kc)
    # Per-chain bookkeeping only: reductions over chains wait until after the loop, so a
    # chain's whole block runs on its own device with no collective.
    return (x, d, r, invalid + bad.reshape(n, kc).sum(axis=1)), r

  carry = (x, d, r, invalid)
  chain_bests = [r[None]]
  if num_full:
    starts = config.block_size * jnp.arange(num_full)
    carry, full_r = jax.lax.scan(lambda c, s: block(c, s, config.block_size), carry, starts)
    chain_bests.append(full_r)
  if rest:
    carry, rest_r = block(carry, num_full * config.block_size, rest)
    chain_bests.append(rest_r[None])
  x, d, r, invalid = carry
  bests = jnp.max(jnp.concatenate(chain_bests), axis=1)

  ends = [0] + [config.block_size * (i + 1) for i in range(num_full)] + ([m - 1] if rest else [])
  trace_nfe = n + n * kc * jnp.asarray(ends)
  nfe = n + n * kc * (m - 1)
  scored = n + n * kc * (num_full + (1 if rest else 0))  # rewards are scored at block ends
  return base.finalize(key, config.common, candidates=d.x0, rewards=r, log_weights=None,
                       nfe=nfe, nfe_evaluated=nfe, trace_nfe=trace_nfe,
                       trace_best=jax.lax.cummax(bests), num_invalid=jnp.sum(invalid),
                       num_scored=scored)


def rows(config: Config) -> int:
  """Each chain's candidates (at the widest level of a schedule), evaluated together."""
  return config.num_chains * (max(config.schedule) if config.schedule else config.num_candidates)

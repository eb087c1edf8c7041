"""Search over paths (SoP, Ma et al. 2025).

N chains run the ODE from level 0 to a start level k0. Then, repeatedly, each chain at level k
is re-noised back to the noisier level j = k - f with the interpolant's exact Gaussian
transition into K candidates; each candidate is solved by the ODE forward to L = min(j + b,
M - 1) (b > f levels), costing L - j + 1 NFEs including its evaluation at L, whose Tweedie
reward ranks it; the chain keeps its best candidate. This repeats until L = M - 1. K is the
largest number of candidates that fits the budget.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from samplers.ground import sharding
from search import base
from search import levels

METHOD = base.Method(
    knobs=dict(
        sop_start=base.Derived(int),    # ODE to this level first (unset: M // 2)
        sop_renoise=base.Derived(int),  # re-noise back f levels (unset: max(1, M // 10))
        sop_denoise=base.Derived(int),  # solve forward b > f levels (unset: 2 f)
    ),
    particle_field='num_chains', order=1)


def schedule(num_steps, start, renoise, denoise):
  """Static (j, L) pairs of the iterations."""
  pairs, k = [], start
  while k < num_steps - 1:
    j = max(k - renoise, 0)
    level = min(j + denoise, num_steps - 1)
    pairs.append((j, level))
    k = level
  return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int
  num_candidates: int
  start: int
  iterations: tuple  # ((j, L), ...)

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    m = num_steps
    start = m // 2 if cfg.sop_start is None else int(cfg.sop_start)
    renoise = max(1, m // 10) if cfg.sop_renoise is None else int(cfg.sop_renoise)
    denoise = 2 * renoise if cfg.sop_denoise is None else int(cfg.sop_denoise)
    if not 0 <= start < m - 1:
      raise ValueError(f'search.sop_start must lie in 0..{m - 2}, got {start}.')
    if renoise < 1 or denoise <= renoise:
      raise ValueError(f'sop needs sop_renoise >= 1 and sop_denoise > sop_renoise, got '
                       f'{renoise} and {denoise}.')
    iterations = schedule(m, start, renoise, denoise)
    n = common.num_particles
    per_candidate = sum(level - j + 1 for j, level in iterations)
    k = (common.budget - n * (start + 1)) // (n * per_candidate)
    if k < 1:
      raise base.too_small(method.name, common.budget, n * (start + 1 + per_candidate),
                           f'{n} chains with one candidate per iteration')
    return cls(common, n, k, start, iterations)


def _ode(sampler):
  return sampler.replace(sde=False)


State = levels.Chains   # the chains between iterations (the scan's carry)


def solve(sampler, x, d, begin, end, cond):
  """The ODE from level `begin` (x evaluated as d) to level `end`, evaluating at each level."""
  ode = _ode(sampler)

  def body(k, carry):
    x, d = carry
    x = ode.step(x, d, k, jnp.zeros_like(x))
    return sharding.rows((x, ode.denoise(x, k + 1, cond)))
  return jax.lax.fori_loop(begin, end, body, (x, d))


def init(key, sampler, reward, config: Config, cond=None):
  """(State, Report) of N chains run by the ODE to the start level and scored there."""
  x = sampler.init_noise(key, config.num_chains)
  x, d = solve(sampler, x, _ode(sampler).denoise(x, 0, cond), 0, config.start, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  return State(x, d, r), levels.Report(r, bad)


def step(state: State, jl, loop_key, sampler, reward, config: Config, cond=None):
  """One iteration: each chain at level k_now re-noised back to level j into K candidates,
  each solved forward to level L and scored, the best kept. jl = (j, L, k_now). Per-chain
  bookkeeping only: bests and counts are reduced over chains after the loop."""
  n, kc = config.num_chains, config.num_candidates
  j, level, k_now = jl[0], jl[1], jl[2]
  scale, std = sampler.interpolant.transition(sampler.grid[k_now], sampler.grid[j])
  xs = sharding.rows(jnp.repeat(state.x, kc, axis=0))
  noise = jax.random.normal(jax.random.fold_in(loop_key, j), xs.shape, xs.dtype)
  xs = scale * xs + std * noise
  xs, ds = solve(sampler, xs, _ode(sampler).denoise(xs, j, cond), j, level, cond)
  rs, bad = base.score_rows(reward, ds.x0, cond)
  x, d, r = base.best_in_groups((xs, ds, rs), rs, kc)
  return State(x, d, r), levels.Report(r, bad.reshape(n, kc).sum(axis=1))


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kc = config.num_chains, config.num_candidates
  init_key, loop_key = jax.random.split(key)
  state, first = init(init_key, sampler, reward, config, cond)
  pairs = np.asarray(config.iterations, np.int32)           # (j, L) per iteration
  previous = np.concatenate([[config.start], pairs[:-1, 1]])  # the level each one starts from
  xs = jnp.asarray(np.concatenate([pairs, previous[:, None]], axis=1).astype(np.int32))
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  costs = [n * (config.start + 1)] + [n * kc * (level - j + 1)
                                      for j, level in config.iterations]
  return levels.drive(key, config.common, state, first, [levels.Segment(advance, xs)],
                      levels.chains_output, costs=costs,
                      scored=n + n * kc * len(config.iterations))[0]


def rows(config: Config) -> int:
  """Each chain's candidates, evaluated together."""
  return config.num_chains * config.num_candidates

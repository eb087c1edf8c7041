"""Progressive seed pruning (PSP): many seeds started, pruned in stages on their Tweedie rewards
as the estimates sharpen, the survivors continued to t = 0.

With a compute multiplier N-bar (the seeds a best-of-N of the same budget would run), stage j
runs c_j = floor(m_j N-bar) seeds (psp_multipliers m = 2, 1, 1/2: 2 N-bar -> N-bar -> N-bar / 2)
up to the level ceil(f_j M) - 1 (psp_stages f = 1/4, 1/2 of the M levels); there every seed's
Tweedie estimate is scored and the c_{j+1} best continue. The last stage runs to level M - 1,
whose Tweedie estimates are the candidates (output `best`: the best survivor). One NFE per seed
per level: NFE = sum_j c_j (levels of stage j). N-bar is the largest that fits the budget; the
default schedule spends (2/4 + 1/4 + 1/4) N-bar M = N-bar M NFEs on a grid that divides, so PSP
runs at best-of-N's compute. The survivors keep their own paths (no resampling, no copies): on
an ODE sampler a seed is its sample, on an SDE one its noise along the way is its own.

The paper's code is not public (docs/methods.md: the schedule is ours, from the issue's example).
Under a mesh the seeds are split over the `particles` axis; every stage's count must divide
over it (experiments/mesh.py checks the first, base.check_divides the rest).
"""

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import levels

METHOD = base.Method(
    knobs=dict(psp_multipliers=(2.0, 1.0, 0.5),   # seeds of each stage, in units of N-bar
               psp_stages=(0.25, 0.5)),           # fractions of the levels at which to prune
    particle_field='num_seeds', particle_source='search.budget and search.psp_multipliers',
    output='best', order=1)


def stage_ends(fractions, num_steps: int) -> tuple:
  """The last level [0, M - 1] of each stage: ceil(f M) - 1 for the prune points, then M - 1."""
  return tuple(max(0, math.ceil(f * num_steps) - 1) for f in fractions) + (num_steps - 1,)


def counts_for(nbar: int, multipliers) -> tuple:
  return tuple(int(math.floor(m * nbar + 1e-9)) for m in multipliers)


def cost(counts, ends) -> int:
  """NFEs: c_0 seeds evaluate levels 0..e_0, c_j levels e_{j-1}+1..e_j."""
  starts = (-1,) + ends[:-1]
  return sum(c * (e - s) for c, s, e in zip(counts, starts, ends))


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  nbar: int           # N-bar, from the budget
  counts: tuple       # seeds of each stage, c_0 > c_1 > ... >= 1
  ends: tuple         # the last level of each stage

  @property
  def num_seeds(self) -> int:
    return self.counts[0]

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    mult = tuple(float(m) for m in cfg.psp_multipliers)
    fractions = tuple(float(f) for f in cfg.psp_stages)
    if len(mult) < 2 or any(not (math.isfinite(m) and m > 0) for m in mult) or any(
        a <= b for a, b in zip(mult, mult[1:])):
      raise ValueError('search.psp_multipliers must be two or more strictly decreasing positive '
                       f'numbers (seeds per stage, in units of N-bar), got {mult}.')
    if len(fractions) != len(mult) - 1 or any(not 0 < f < 1 for f in fractions) or any(
        a >= b for a, b in zip(fractions, fractions[1:])):
      raise ValueError(f'search.psp_stages must be {len(mult) - 1} strictly increasing fractions '
                       f'in (0, 1) (one per pruning), got {fractions}.')
    ends = stage_ends(fractions, num_steps)
    if any(a >= b for a, b in zip(ends, ends[1:])):
      raise ValueError(f'search.psp_stages={fractions} put two prunings at one level of '
                       f'{num_steps} steps (stage ends {ends}); use more steps or fewer stages.')
    valid = lambda n: all(c >= 1 for c in counts_for(n, mult)) and len(
        set(counts_for(n, mult))) == len(mult)
    # cost(n) is nondecreasing and at least unit * n - M (each floor loses under one seed per
    # level), so no n above (B + M) / unit fits: search down from there.
    starts = (-1,) + ends[:-1]
    unit = sum(m * (e - s) for m, s, e in zip(mult, starts, ends))
    nbar = int((common.budget + num_steps) / unit) + 1
    while nbar > 0 and not (cost(counts_for(nbar, mult), ends) <= common.budget
                            and valid(nbar)):
      nbar -= 1
    if nbar == 0:
      n = next(n for n in range(1, 10 ** 6) if valid(n))
      raise base.too_small(method.name, common.budget, cost(counts_for(n, mult), ends),
                           f'stages of {counts_for(n, mult)} seeds ending at levels {ends}')
    return cls(common, nbar, counts_for(nbar, mult), ends)


class State(NamedTuple):
  """The surviving seeds at the end of a stage."""
  x: jax.Array     # [c, ...] their states
  d: Any           # their evaluation (a samplers.sampler.Denoised)
  r: jax.Array     # [c] rewards of their Tweedie estimates
  ids: jax.Array   # [c] int32: which of the c_0 seeds each is


def init(key, sampler, config: Config, cond=None):
  """c_0 seeds at level 0, evaluated: (x, d, ids)."""
  x = sampler.init_noise(key, config.counts[0])
  return x, sampler.denoise(x, 0, cond), sharding.rows(jnp.arange(config.counts[0]))


def seed_noise(key, k, ids, shape):
  """The step noise [c, *shape] of seeds `ids` at level k: fold_in(fold_in(key, k), id), so a
  seed's path is the same whether or not others were pruned beside it."""
  level_key = jax.random.fold_in(key, k)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(level_key, i), shape))(ids)


def advance(x, d, ids, start: int, end: int, key, sampler, cond=None):
  """Levels start -> end (one NFE per seed per level), each seed with its own noise."""
  def level(k, carry):
    x, d = carry
    x = sampler.step(x, d, k, seed_noise(key, k, ids, x.shape[1:]))
    return sharding.rows((x, sampler.denoise(x, k + 1, cond)))
  return jax.lax.fori_loop(start, end, level, (x, d))


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  counts, ends = config.counts, config.ends
  base.check_divides('psp', {f'stage {j}': c for j, c in enumerate(counts)},
                     sharding.particle_axis_size())
  init_key, loop_key, out_key = jax.random.split(key, 3)
  x, d, ids = init(init_key, sampler, config, cond)
  x, d = advance(x, d, ids, 0, ends[0], loop_key, sampler, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  first = levels.Report(r, bad)

  def stage(state, j):
    # Prune to the c_j best (invalid rewards rank last; ties: the lower row), then run stage j.
    keep = jax.lax.top_k(sharding.replicated(state.r), counts[j])[1]
    x, d, ids = sharding.rows(base.take_rows((state.x, state.d, state.ids), keep))
    x, d = advance(x, d, ids, ends[j - 1], ends[j], loop_key, sampler, cond)
    r, bad = base.score_rows(reward, d.x0, cond)
    return State(x, d, r, ids), levels.Report(r, bad)

  costs = [counts[0] * (ends[0] + 1)] + [c * (e - s) for c, s, e in
                                         zip(counts[1:], ends[:-1], ends[1:])]
  return levels.drive(out_key, config.common, State(x, d, r, ids), first,
                      [levels.Segment(stage, range(1, len(counts)), unrolled=True)],
                      lambda s: levels.Output(s.d.x0, s.r), costs=costs,
                      scored=sum(counts))[0]


def rows(config: Config) -> int:
  return config.counts[0]

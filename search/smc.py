"""SMC / particle filtering towards p*(x0) ~ p(x0) exp(r(x0) / lambda) (FK steering, DAS).

N = budget // M particles follow the base SDE kernel. With r_k the reward of a particle's
Tweedie estimate at level k along its ancestral path, the potentials are (log, lambda = temp):
  difference  log G_k = (r_k - r_{k-1}) / lambda   (log G_0 = r_0 / lambda; telescopes to r/lambda)
  immediate   log G_k = r_k / lambda
  max         log G_k = max_{j<=k} r_j / lambda
  sum         log G_k = sum_{j<=k} r_j / lambda
and at the last level the terminal correction r_{M-1} / lambda - sum_k log G_k (zero for
difference) makes the final weights target p*. Each particle carries that path sum through
resampling. Resampling happens after weighting at level k when ESS < ess_threshold * N (or at
the levels listed in resample_levels), and resets the weights; otherwise they accumulate.

Invalid rewards (NaN or infinite; docs/reliability.md, "Invalid rewards"): at an intermediate
level an invalid reward carries no information. The particle's potential there is what it
would be had the level not been scored (its running statistics skip it: log G_k = 0 for
difference and immediate, the running max or sum so far for max and sum), so the terminal
correction still makes the final weights exactly exp(r_{M-1} / lambda). A particle whose
*final* reward is invalid gets weight zero: it is never drawn while any final reward is valid.

search.particle_schedule = linear runs N_k = c (2 (M - k) - 1) particles at level k,
c = budget // M^2 (95, 85, ..., 5 at 500 NFE and 10 steps, as the RBF authors' released SMC
spends its budget): every level resamples N_{k+1} particles from the N_k weighted ones (the
count changes, so the ESS rule and resample_levels do not apply), and the levels are unrolled.

Under a device mesh the particles are split along its `particles` axis. Resampling is global by
default: the log-weights are all-gathered, every device computes the same ancestors, and XLA
gathers the chosen particles. `resampling_scope=island` resamples within each device's own
particles instead (the ESS decision stays global): no particle moves between devices, at the
price of results that depend on the number of devices.
"""

import dataclasses
import functools
from typing import NamedTuple

import blackjax.smc.ess as blackjax_ess
import jax
import jax.numpy as jnp

from samplers.ground import sharding
from samplers.sampler import Denoised
from search import base
from search import levels

POTENTIALS = ('difference', 'immediate', 'max', 'sum')
SCOPES = ('global', 'island')

METHOD = base.Method(
    knobs=dict(
        potential='difference',     # difference | immediate | max | sum
        ess_threshold=0.5,          # resample when ESS < threshold * N (1.0: every level)
        resample_levels=(),         # levels to resample at instead of the ESS rule; (): the rule
        resampling_scope='global',  # global | island (within each device's particles)
        particle_schedule='constant',  # constant | linear (decaying particles per level)
    ),
    particle_field='num_particles', particle_source='search.budget // sampler.num_steps',
    order=2, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_particles: int          # N, from the budget
  potential: str
  ess_threshold: float
  resample_levels: tuple      # () -> the ESS rule
  scope: str = 'global'       # global | island (resample within each device's particles)
  schedule: tuple = ()        # the linear schedule's particles per level; (): N at every level

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    if cfg.potential not in POTENTIALS:
      raise ValueError(f'Unknown search.potential {cfg.potential!r}; '
                       f'valid: {", ".join(POTENTIALS)}.')
    threshold = float(cfg.ess_threshold)
    if not 0.0 <= threshold <= 1.0:
      raise ValueError(f'search.ess_threshold must lie in [0, 1], got {threshold}.')
    levels = tuple(int(k) for k in cfg.resample_levels)
    bad = [k for k in levels if not 0 <= k < num_steps - 1]
    if bad:
      raise ValueError(f'search.resample_levels {bad} are outside 0..{num_steps - 2}.')
    n = common.budget // num_steps
    if n < 2:
      raise base.too_small(method.name, common.budget, 2 * num_steps,
                           f'two particles of {num_steps} steps')
    scope = cfg.resampling_scope
    if scope not in SCOPES:
      raise ValueError(f'Unknown search.resampling_scope {scope!r}; valid: {", ".join(SCOPES)}.')
    if base.particle_schedule(cfg) == 'constant':
      return cls(common, n, cfg.potential, threshold, levels, scope)
    if levels or scope != 'global':
      raise ValueError('search.particle_schedule=linear resamples at every level, globally: '
                       'it takes no search.resample_levels or resampling_scope=island.')
    schedule = base.linear_schedule(common.budget, num_steps)
    if not schedule or schedule[-1] < 2:
      raise base.too_small(method.name, common.budget, 2 * num_steps ** 2,
                           f'a linear schedule ending in two particles over {num_steps} levels')
    return cls(common, schedule[0], cfg.potential, threshold, levels, scope, schedule)


class PathStats(NamedTuple):
  """A particle's statistics over the valid rewards of its ancestral path so far."""
  ref: jax.Array        # [N] the last valid reward (0 before any)
  max: jax.Array        # [N] the running max (-inf before any)
  sum: jax.Array        # [N] the running sum


class State(NamedTuple):
  """The particles between levels (the scan's carry)."""
  x: jax.Array          # [N, ...] states at the current level
  d: Denoised           # their evaluation
  r: jax.Array          # [N] rewards of their Tweedie estimates
  log_w: jax.Array      # [N] log-weights since the last resampling
  path: jax.Array       # [N] the sum of log-potentials along each particle's path
  stats: PathStats
  resamples: jax.Array  # resamplings so far


def _level_potential(potential, r, valid, stats: PathStats, temperature):
  """(log G_k [N], updated stats) for rewards r at one level, given the particle's path
  statistics. An invalid reward leaves the statistics as they were and gets the potential of
  an unscored level."""
  ref_new = jnp.where(valid, r, stats.ref)
  max_new = jnp.where(valid, jnp.maximum(stats.max, r), stats.max)
  sum_new = stats.sum + jnp.where(valid, r, 0.0)
  if potential == 'difference':
    log_g = jnp.where(valid, r - stats.ref, 0.0)
  elif potential == 'immediate':
    log_g = jnp.where(valid, r, 0.0)
  elif potential == 'max':
    log_g = jnp.where(jnp.isfinite(max_new), max_new, 0.0)
  else:
    log_g = sum_new
  return log_g / temperature, PathStats(ref_new, max_new, sum_new)


def _empty_stats(n: int) -> PathStats:
  return PathStats(jnp.zeros(n), jnp.full(n, -jnp.inf), jnp.zeros(n))


def init(key, sampler, reward, config: Config, cond=None):
  """(State, Report) of N fresh particles evaluated and weighted at level 0."""
  n, lam = config.num_particles, config.common.temperature
  x = sampler.init_noise(key, n)
  d = sampler.denoise(x, 0, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  log_w, stats = _level_potential(config.potential, r, bad == 0, _empty_stats(n), lam)
  return State(x, d, r, log_w, log_w, stats, jnp.int32(0)), levels.Report(r, bad)


def step(state: State, k, loop_key, sampler, reward, config: Config, cond=None):
  """Level k -> k + 1: resample (by the ESS rule or at the listed levels), move by the base
  kernel, weight by the potential."""
  n, lam = config.num_particles, config.common.temperature
  x, d, r, log_w, path, stats, resamples = state
  k_res, k_prop = jax.random.split(jax.random.fold_in(loop_key, k))
  # Under a mesh the log-weights are all-gathered here: every device then computes the same
  # ESS and the same ancestors from the same values (global resampling).
  all_log_w = sharding.replicated(log_w)
  if config.resample_levels:
    do = jnp.any(jnp.asarray(config.resample_levels, jnp.int32) == k)
  else:
    do = blackjax_ess.ess(all_log_w) < config.ess_threshold * n
  islands = sharding.particle_axis_size() if config.scope == 'island' else 1
  particles = (x, d, r, path, stats)

  def resampled(particles):
    if islands > 1:
      moved = base.take_in_groups(particles, _island_ancestors(k_res, log_w, islands, config))
    else:
      idx = base.resample(k_res, all_log_w, n, config.common.resampling)
      moved = sharding.rows(base.take_rows(particles, idx))
    return moved + (jnp.zeros_like(log_w),)

  # Only a resampling level pays for the gather (lax.cond runs one branch).
  x, d, r, path, stats, log_w = jax.lax.cond(
      do, resampled, lambda p: p + (log_w,), particles)

  noise = jax.random.normal(k_prop, x.shape, x.dtype)
  x = sampler.step(x, d, k, noise)
  d = sampler.denoise(x, k + 1, cond)
  r_new, bad = base.score_rows(reward, d.x0, cond)
  log_g, stats = _level_potential(config.potential, r_new, bad == 0, stats, lam)
  moved = sharding.rows((x, d, r_new, log_w + log_g, path + log_g, stats))
  return State(*moved, resamples + do.astype(jnp.int32)), levels.Report(r_new, bad)


def finish(state: State, config: Config) -> levels.Output:
  """The particles weighted by their terminal correction: a path's final weight becomes
  exp(r_{M-1} / lambda) overall (every potential is finite, so this never meets
  -inf - -inf); an invalid end: weight 0."""
  lam = config.common.temperature
  log_w = jnp.where(jnp.isfinite(state.r), state.log_w + state.r / lam - state.path, -jnp.inf)
  return levels.Output(state.d.x0, state.r, log_w)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  if config.schedule:
    return _run_scheduled(key, sampler, reward, config, cond)
  n, m = config.num_particles, sampler.num_steps
  init_key, loop_key, out_key = jax.random.split(key, 3)
  state, first = init(init_key, sampler, reward, config, cond)
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  return levels.drive(out_key, config.common, state, first,
                      [levels.Segment(advance, jnp.arange(m - 1))],
                      functools.partial(finish, config=config), costs=[n] * m,
                      scored=n * m)[0]


def _island_ancestors(key, log_w, g: int, config):
  """Ancestors [g, N / g] within each of g contiguous blocks of particles (one block per device
  along the particle axis), as indices into the block: no particle crosses devices."""
  per = config.num_particles // g
  keys = jax.random.split(key, g)
  return jax.vmap(lambda k, lw: base.resample_local(k, lw, per, config.common.resampling))(
      keys, log_w.reshape(g, per))


def _run_scheduled(key, sampler, reward, config: Config, cond):
  """SMC with N_k particles at level k, resampling N_{k+1} of them at every level; the levels
  are unrolled (their shapes differ)."""
  counts, lam = config.schedule, config.common.temperature
  init_key, loop_key, out_key = jax.random.split(key, 3)
  x = sampler.init_noise(init_key, counts[0])
  d = sampler.denoise(x, 0, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  log_w, stats = _level_potential(config.potential, r, bad == 0, _empty_stats(counts[0]), lam)
  state = State(x, d, r, log_w, log_w, stats, jnp.int32(0))

  def advance(state: State, k):
    count = counts[k + 1]
    x, d, (path, stats), r, bad = base.resample_move(
        jax.random.fold_in(loop_key, k), sampler, reward, cond, k, state.log_w, count,
        config.common.resampling, state.x, state.d, (state.path, state.stats))
    log_g, stats = _level_potential(config.potential, r, bad == 0, stats, lam)
    return (State(x, d, r, log_g, path + log_g, stats, state.resamples + 1),
            levels.Report(r, bad))

  return levels.drive(out_key, config.common, state, levels.Report(r, bad),
                      [levels.Segment(advance, range(len(counts) - 1), unrolled=True)],
                      functools.partial(finish, config=config), costs=list(counts),
                      scored=sum(counts))[0]


def rows(config: Config) -> int:
  """The particles (at the widest level of a schedule)."""
  return max(config.schedule) if config.schedule else config.num_particles

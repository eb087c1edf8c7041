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

import blackjax.smc.ess as blackjax_ess
import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base

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
    order=2)


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


def _level_potential(potential, r, valid, stats, temperature):
  """(log G_k [N], updated stats) for rewards r at one level, given the particle's statistics
  over the valid rewards of its ancestral path so far: (last valid reward, or 0 before any;
  running max, -inf before any; running sum). An invalid reward leaves the statistics as they
  were and gets the potential of an unscored level."""
  ref, run_max, run_sum = stats
  ref_new = jnp.where(valid, r, ref)
  max_new = jnp.where(valid, jnp.maximum(run_max, r), run_max)
  sum_new = run_sum + jnp.where(valid, r, 0.0)
  if potential == 'difference':
    log_g = jnp.where(valid, r - ref, 0.0)
  elif potential == 'immediate':
    log_g = jnp.where(valid, r, 0.0)
  elif potential == 'max':
    log_g = jnp.where(jnp.isfinite(max_new), max_new, 0.0)
  else:
    log_g = sum_new
  return log_g / temperature, (ref_new, max_new, sum_new)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  if config.schedule:
    return _run_scheduled(key, sampler, reward, config, cond)
  n, m, lam = config.num_particles, sampler.num_steps, config.common.temperature
  init_key, loop_key, out_key = jax.random.split(key, 3)
  x = sampler.init_noise(init_key, n)
  d = sampler.denoise(x, 0, cond)
  r_first, bad_first = base.score_rows(reward, d.x0, cond)
  empty = (jnp.zeros(n), jnp.full(n, -jnp.inf), jnp.zeros(n))
  log_w, stats = _level_potential(config.potential, r_first, bad_first == 0, empty, lam)
  path = log_w                                   # sum of log-potentials along the path
  levels = jnp.asarray(config.resample_levels or (-1,), jnp.int32)
  islands = sharding.particle_axis_size() if config.scope == 'island' else 1

  def step(carry, k):
    x, d, r, log_w, path, stats, resamples = carry
    k_res, k_prop = jax.random.split(jax.random.fold_in(loop_key, k))
    # Under a mesh the log-weights are all-gathered here: every device then computes the same
    # ESS and the same ancestors from the same values (global resampling).
    all_log_w = sharding.replicated(log_w)
    if config.resample_levels:
      do = jnp.any(levels == k)
    else:
      do = blackjax_ess.ess(all_log_w) < config.ess_threshold * n
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
    carry = sharding.rows((x, d, r_new, log_w + log_g, path + log_g, stats))
    return carry + (resamples + do.astype(jnp.int32),), (r_new, bad)

  carry = (x, d, r_first, log_w, path, stats, jnp.int32(0))
  carry, (r_by_level, bad_by_level) = jax.lax.scan(step, carry, jnp.arange(m - 1))
  x, d, r, log_w, path, _, _ = carry
  # Terminal correction: the final weight of a path becomes exp(r_{M-1} / lambda) overall
  # (every potential is finite, so this never meets -inf - -inf); an invalid end: weight 0.
  log_w = jnp.where(jnp.isfinite(r), log_w + r / lam - path, -jnp.inf)

  # Bests and invalid counts are reduced over particles once, after the loop.
  trace_nfe = n * jnp.arange(1, m + 1)
  trace_best = jax.lax.cummax(jnp.max(jnp.concatenate([r_first[None], r_by_level]), axis=1))
  invalid = jnp.sum(bad_first) + jnp.sum(bad_by_level)
  return base.finalize(out_key, config.common, candidates=d.x0, rewards=r, log_weights=log_w,
                       nfe=n * m, nfe_evaluated=n * m, trace_nfe=trace_nfe,
                       trace_best=trace_best, num_invalid=invalid, num_scored=n * m)


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
  empty = (jnp.zeros(counts[0]), jnp.full(counts[0], -jnp.inf), jnp.zeros(counts[0]))
  log_w, stats = _level_potential(config.potential, r, bad == 0, empty, lam)
  path, bests, invalid = log_w, [jnp.max(r)], [jnp.sum(bad)]
  for k, count in enumerate(counts[1:]):
    x, d, (path, stats), r, bad = base.resample_move(
        jax.random.fold_in(loop_key, k), sampler, reward, cond, k, log_w, count,
        config.common.resampling, x, d, (path, stats))
    log_g, stats = _level_potential(config.potential, r, bad == 0, stats, lam)
    log_w, path = log_g, path + log_g
    bests.append(jnp.max(r))
    invalid.append(jnp.sum(bad))
  log_w = jnp.where(jnp.isfinite(r), log_w + r / lam - path, -jnp.inf)   # as in run()
  nfe = sum(counts)
  return base.finalize(out_key, config.common, candidates=d.x0, rewards=r, log_weights=log_w,
                       nfe=nfe, nfe_evaluated=nfe, trace_nfe=jnp.cumsum(jnp.asarray(counts)),
                       trace_best=jax.lax.cummax(jnp.stack(bests)), num_invalid=sum(invalid),
                       num_scored=nfe)


def rows(config: Config) -> int:
  """The particles (at the widest level of a schedule)."""
  return max(config.schedule) if config.schedule else config.num_particles

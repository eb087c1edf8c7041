"""Tempered SMC (DAS, Kim et al. 2025, without gradients): SMC whose target anneals the reward's
strength along the path, with an adaptive schedule.

N = budget // M particles follow the base SDE kernel. The intermediate target at level k is
  gamma_k(x_{0:k}) ~ p(x_{0:k}) exp(beta_k r_k / lambda),    0 <= beta_0 <= ... <= beta_{M-1} = 1,
with r_k the reward of a particle's Tweedie estimate at level k. Every level is weighted by the
incremental log-weight (beta_k r_k - beta_{k-1} r_{k-1}) / lambda and then resampled (the
weights reset), as adaptive tempered SMC does. beta_k is the largest value in
[beta_{k-1}, 1] whose incremental weights keep an ESS of tempering_ess * N, found by blackjax's
bisection (blackjax.smc.solver.dichotomy, on the increment beta_k - beta_{k-1}); the last level
takes beta = 1, so the final weights target p*(x0) ~ p(x0) exp(r(x0) / lambda) exactly.

Invalid rewards: at an intermediate level an invalid reward leaves the particle's tempered
value beta r where it was (incremental weight 1, as if the level were not scored); an invalid
final reward gets weight zero.
"""

import dataclasses
import functools
from typing import NamedTuple

import blackjax.smc.ess as blackjax_ess
import blackjax.smc.solver as blackjax_solver
import jax
import jax.numpy as jnp

from samplers.ground import sharding
from samplers.sampler import Denoised
from search import base
from search import levels

METHOD = base.Method(
    knobs=dict(tempering_ess=0.5),   # the ESS fraction the adaptive schedule keeps per level
    particle_field='num_particles', particle_source='search.budget // sampler.num_steps',
    order=8, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_particles: int     # N, from the budget
  tempering_ess: float

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    target = float(cfg.tempering_ess)
    if not 0.0 < target < 1.0:
      raise ValueError(f'search.tempering_ess must lie in (0, 1), got {target}.')
    n = common.budget // num_steps
    if n < 2:
      raise base.too_small(method.name, common.budget, 2 * num_steps,
                           f'two particles of {num_steps} steps')
    return cls(common, n, target)


def increments(beta, value_prev, r, valid, temperature):
  """(incremental log-weights [N], new tempered values beta r [N]) at inverse temperature
  beta; an invalid reward keeps the previous tempered value (a zero increment)."""
  value = jnp.where(valid, beta * jnp.where(valid, r, 0.0), value_prev)
  return (value - value_prev) / temperature, value


def next_beta(beta_prev, value_prev, r, valid, temperature, target_ess: float):
  """The largest beta in [beta_prev, 1] whose incremental weights keep ESS >= target_ess * N
  (1 if even beta = 1 does; beta_prev if even that one does not)."""
  n = r.shape[0]

  def excess(delta):   # log ESS - log(target N); decreasing in delta
    log_w, _ = increments(beta_prev + delta, value_prev, r, valid, temperature)
    return blackjax_ess.log_ess(jnp.nan_to_num(log_w)) - jnp.log(target_ess * n)

  room = 1.0 - beta_prev
  delta = blackjax_solver.dichotomy(excess, 0.0, room)
  delta = jnp.where(excess(0.0) < 0, 0.0, jnp.clip(delta, 0.0, room))
  return jnp.where(room > 0, beta_prev + delta, beta_prev)


class State(NamedTuple):
  """The particles between levels (the scan's carry)."""
  x: jax.Array        # [N, ...] states at the current level
  d: Denoised         # their evaluation
  r: jax.Array        # [N] rewards of their Tweedie estimates
  log_w: jax.Array    # [N] this level's incremental log-weights
  value: jax.Array    # [N] the tempered values beta r (the last valid one where r is invalid)
  beta: jax.Array     # the inverse temperature reached


def init(key, sampler, reward, config: Config, cond=None):
  """(State, Report) of N fresh particles at level 0, beta_0 chosen by the ESS rule."""
  n, lam = config.num_particles, config.common.temperature
  x = sampler.init_noise(key, n)
  d = sampler.denoise(x, 0, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  valid = bad == 0
  zeros = jnp.zeros(n)
  beta = next_beta(0.0, zeros, sharding.replicated(r), sharding.replicated(valid), lam,
                   config.tempering_ess)
  log_w, value = increments(beta, zeros, r, valid, lam)
  return State(x, d, r, log_w, value, beta), levels.Report(r, bad, beta)


def step(state: State, k, loop_key, sampler, reward, config: Config, cond=None):
  """Level k -> k + 1: resample by the weights, move by the base kernel, choose beta_{k+1}
  (1 at the last level)."""
  n, m, lam = config.num_particles, sampler.num_steps, config.common.temperature
  x, d, value, r, bad = base.resample_move(jax.random.fold_in(loop_key, k), sampler, reward,
                                           cond, k, state.log_w, n, config.common.resampling,
                                           state.x, state.d, state.value)
  valid = bad == 0
  solved = next_beta(state.beta, sharding.replicated(value), sharding.replicated(r),
                     sharding.replicated(valid), lam, config.tempering_ess)
  beta = jnp.where(k + 1 == m - 1, 1.0, solved)
  log_w, value = increments(beta, value, r, valid, lam)
  return (State(*sharding.rows((x, d, r, log_w, value)), beta),
          levels.Report(r, bad, beta))


def finish(state: State) -> levels.Output:
  """The particles by their last weights; an invalid end: weight zero."""
  return levels.Output(state.d.x0, state.r,
                       jnp.where(jnp.isfinite(state.r), state.log_w, -jnp.inf))


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  return run_with_schedule(key, sampler, reward, config, cond)[0]


def run_with_schedule(key, sampler, reward, config: Config, cond=None):
  """(SearchResult, the inverse temperatures beta_0..beta_{M-1} [M] it chose)."""
  n, m = config.num_particles, sampler.num_steps
  init_key, loop_key, out_key = jax.random.split(key, 3)
  state, first = init(init_key, sampler, reward, config, cond)
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  result, (betas,) = levels.drive(out_key, config.common, state, first,
                                  [levels.Segment(advance, jnp.arange(m - 1))], finish,
                                  costs=[n] * m, scored=n * m)
  return result, jnp.concatenate([jnp.asarray(first.extra)[None], betas])

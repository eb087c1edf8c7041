"""Rollover budget forcing (RBF, Kim et al. 2025).

Each of N chains gets a quota Q of proposals per level. Proposals are drawn one at a time from
the SDE kernel; the first whose Tweedie reward beats the chain's best-so-far reward r* is taken
at once and the unused quota rolls over to the next level. If the quota runs out, the chain
takes the level's best proposal and r* is not lowered.

Parallel mode (`rbf_parallel` = P > 1) draws P proposals at a time and takes the first
improving one in proposal order. Proposal j of chain n at level k always uses the noise
fold_in(fold_in(fold_in(key, k), n), j), so both modes choose the same samples and charge the
same NFEs; `nfe_evaluated` also counts the speculative and masked rows the batch computed.

Paper: quota Q = (budget / N - 1) // (M - 1) after one evaluation at level 0.
Released code (`rbf_variant = released`): first a best-of-K0 search over initial noises
(2 NFEs each: level 0, one step, level 1; K0 = 25), quota (budget / N - 2 K0) // (2 M), and the
chains stop advancing two levels early, returning the Tweedie estimate of the last level they
evaluated. Each switch can also be set on its own.

`rbf_spend_budget` (the released code's, and unset the variant's): the last level draws every
NFE the chain has left, the remainder of the budget included, and takes its best proposal, so
each chain spends exactly budget / N. Without it (the paper's algorithm) the quota still rolled
over at the last level is discarded, and a reward that improves easily leaves most of the budget
unspent: compare such runs at the NFEs they spent (`nfe`), not at their budget.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers import sharding
from samplers.sampler import Denoised
from search import base

VARIANTS = ('paper', 'released')

METHOD = base.Method(
    knobs=dict(
        rbf_variant='paper',        # paper | released
        rbf_parallel=1,             # P proposals drawn at once (same choices as P = 1)
        # Unset: the variant's value.
        rbf_init_candidates=base.Derived(int),  # initial best-of-K0 noise search
        rbf_stop_early=base.Derived(int),       # stop advancing this many levels early
        rbf_quota_divisor=base.Derived(int),    # quota = (budget / N - init) // divisor
        rbf_spend_budget=base.Derived(bool),    # the last level spends all that is left
    ),
    particle_field='num_chains', order=5)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int
  quota: int
  parallel: int
  init_candidates: int  # K0 (0: no initial noise search)
  stop_early: int       # levels before M - 1 at which chains stop
  last_extra: int = 0   # >= 0: the last level spends its quota, rollover and this remainder
                        # in full and takes its best proposal; -1: off (the paper)

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps, least=2)
    variant = cfg.rbf_variant
    if variant not in VARIANTS:
      raise ValueError(f'Unknown search.rbf_variant {variant!r}; valid: {", ".join(VARIANTS)}.')
    released = variant == 'released'

    def pick(field, paper, rel):  # the knob if set, else the variant's value
      value = cfg[field]
      if value is not None and int(value) < 0:
        raise ValueError(f'search.{field} must be >= 0 (unset: the variant\'s value), '
                         f'got {value}.')
      return int(value) if value is not None else (rel if released else paper)
    init = pick('rbf_init_candidates', 0, 25)
    stop = pick('rbf_stop_early', 0, 2)
    divisor = pick('rbf_quota_divisor', 0, 2 * num_steps)
    parallel = int(cfg.rbf_parallel)
    if parallel < 1:
      raise ValueError(f'search.rbf_parallel must be >= 1, got {parallel}.')
    start = 1 if init else 0
    final = num_steps - 1 - stop
    if final <= start:
      raise ValueError(f'rbf_stop_early={stop} leaves no level to advance through with '
                       f'{num_steps} steps.')
    n = common.num_particles
    init_cost = 2 * init if init else 1
    divisor = divisor or (final - start)
    quota = (common.budget // n - init_cost) // divisor
    if quota < 1:
      smallest = n * (init_cost + divisor)
      raise base.too_small(method.name, common.budget, smallest,
                           f'{n} chains with one proposal per level')
    spend = cfg.get('rbf_spend_budget')
    spend = released if spend is None else bool(spend)
    extra = common.budget // n - init_cost - quota * (final - start) if spend else -1
    return cls(common, n, quota, parallel, init, stop, extra)


def _initial_states(key, sampler, reward, config, cond, first, count):
  """Chains first..first+count-1 at their start level: (x, d, r, start level, NFEs, invalid,
  scored). Noise is drawn for all N chains and sliced, so a chain's draws never depend on how
  the chains are split across devices."""
  n = config.num_chains
  rows = lambda a, k=1: jax.lax.dynamic_slice_in_dim(a, first * k, count * k)
  if not config.init_candidates:
    x = rows(sampler.init_noise(key, n))
    d = sampler.denoise(x, 0, cond)
    r, bad = base.score(reward, d.x0, cond)
    return x, d, r, 0, count, bad, count
  k0 = config.init_candidates
  k_init, k_step = jax.random.split(key)
  x = rows(sampler.init_noise(k_init, n * k0), k0)
  d = sampler.denoise(x, 0, cond)
  noise = rows(jax.random.normal(k_step, (n * k0,) + x.shape[1:], x.dtype), k0)
  x = sampler.step(x, d, 0, noise)
  d = sampler.denoise(x, 1, cond)
  r, bad = base.score(reward, d.x0, cond)
  x, d, r = base.best_in_groups((x, d, r), r, k0)
  return x, d, r, 1, 2 * count * k0, bad, count * k0


class Chains(NamedTuple):
  """The chains between levels (the carry of the scan over levels)."""
  x: jax.Array          # [n, ...] states at the current level
  d: Denoised           # their evaluation
  r: jax.Array          # [n] rewards of their Tweedie estimates
  r_star: jax.Array     # [n] the reward to beat (the last improving proposal's)
  rollover: jax.Array   # [n] unspent quota carried to the next level
  nfe: jax.Array        # NFEs charged
  nfe_evaluated: jax.Array
  num_invalid: jax.Array
  num_scored: jax.Array


class Round(NamedTuple):
  """One level's proposal rounds (the while-loop state): p proposals per chain per round."""
  next_proposal: jax.Array  # j0: the index of the round's first proposal
  active: jax.Array         # [n] chains still drawing at this level
  found_any: jax.Array      # [n] a proposal beat r_star
  taken: jax.Array          # [n] some proposal was drawn
  take: tuple               # (x, d, r) the proposal each chain moves to
  best_r: jax.Array         # [n] the reward of the best proposal drawn
  charged: jax.Array        # [n] proposals charged
  nfe_evaluated: jax.Array
  num_invalid: jax.Array
  num_scored: jax.Array


class Outcome(NamedTuple):
  """What a group of chains returns: finals and counts, traces [T] over the levels."""
  x0: jax.Array
  r: jax.Array
  nfe: jax.Array
  nfe_evaluated: jax.Array
  num_invalid: jax.Array
  num_scored: jax.Array
  trace_nfe: jax.Array
  trace_best: jax.Array


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  """Under a mesh, each device runs its own chains with jax.shard_map: the proposal loop of a
  level stops when that device's chains are done, so no collective runs per level or round;
  counts and traces are combined once at the end."""
  n, devices = config.num_chains, sharding.particle_axis_size()
  if devices == 1:
    out = _run_chains(key, sampler, reward, config, cond, 0, n)
  else:
    per = n // devices

    def local(key, sampler, reward, cond):
      first = jax.lax.axis_index(sharding.PARTICLES) * per
      out = _run_chains(key, sampler, reward, config, cond, first, per)
      # Per-device counts and traces get a leading axis of 1 to be stacked over devices.
      return Outcome(out.x0, out.r, *(jnp.asarray(v)[None] for v in out[2:]))

    rows, replicated = jax.sharding.PartitionSpec(sharding.PARTICLES), jax.sharding.PartitionSpec()
    out = jax.shard_map(local, in_specs=(replicated,) * 4, out_specs=Outcome(*(rows,) * 8),
                        axis_names={sharding.PARTICLES}, check_vma=False)(
                            key, sampler, reward, cond)
    out = Outcome(out.x0, out.r, out.nfe.sum(), out.nfe_evaluated.sum(), out.num_invalid.sum(),
                  out.num_scored.sum(), out.trace_nfe.sum(0), out.trace_best.max(0))
  return base.finalize(key, config.common, candidates=out.x0, rewards=out.r, log_weights=None,
                       nfe=out.nfe, nfe_evaluated=out.nfe_evaluated, trace_nfe=out.trace_nfe,
                       trace_best=jax.lax.cummax(out.trace_best), num_invalid=out.num_invalid,
                       num_scored=out.num_scored)


def _run_chains(key, sampler, reward, config, cond, first, n) -> Outcome:
  """RBF for chains first..first+n-1 of config.num_chains."""
  p, m = config.parallel, sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  x, d, r, start, nfe0, invalid0, scored0 = _initial_states(init_key, sampler, reward, config,
                                                           cond, first, n)
  final = m - 1 - config.stop_early
  chains = first + jnp.arange(n)

  spend = config.last_extra >= 0

  def advance(c: Chains, k):
    last = spend & (k == final - 1)   # this level draws all the chain has left
    quota = config.quota + c.rollover + jnp.where(last, max(config.last_extra, 0), 0)
    chain_keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(loop_key, k),
                                                         chains)
    xp_rep, dp_rep = base.repeat_rows((c.x, c.d), p)

    def round_body(s: Round) -> Round:
      j0 = s.next_proposal
      js = j0 + jnp.arange(p)
      keys = jax.vmap(lambda ck: jax.vmap(lambda j: jax.random.fold_in(ck, j))(js))(chain_keys)
      noise = jax.vmap(jax.vmap(lambda kk: jax.random.normal(kk, c.x.shape[1:], c.x.dtype)))(
          keys)
      xs = sampler.step(xp_rep, dp_rep, k, noise.reshape(xp_rep.shape))
      ds = sampler.denoise(xs, k + 1, cond)
      rs, _ = base.score(reward, ds.x0, cond)
      rs = rs.reshape(n, p)
      slot = s.active[:, None] & (js[None, :] < quota[:, None])
      improving = slot & (rs > c.r_star[:, None]) & ~last
      found = jnp.any(improving, axis=1)
      first_found = jnp.argmax(improving, axis=1)
      masked = jnp.where(slot, rs, -jnp.inf)
      round_best = jnp.argmax(masked, axis=1)
      # A chain always leaves the level: the first drawn proposal is taken if nothing beats it.
      better = (jnp.max(masked, axis=1) > s.best_r) | (~s.taken & jnp.any(slot, axis=1))
      choice = jnp.where(found, first_found, round_best)
      new = base.pick_in_groups((xs, ds, rs.reshape(-1)), choice, p)
      update = found | (better & ~s.found_any)
      take = jax.tree.map(lambda old, nw: jnp.where(
          update.reshape((n,) + (1,) * (nw.ndim - 1)), nw, old), s.take, new)
      return Round(
          next_proposal=j0 + p, active=s.active & ~found & (j0 + p < quota),
          found_any=s.found_any | found, taken=s.taken | jnp.any(slot, axis=1), take=take,
          best_r=jnp.where(update, jnp.max(masked, axis=1), s.best_r),
          charged=s.charged + jnp.where(found, first_found + 1, jnp.sum(slot, axis=1)),
          nfe_evaluated=s.nfe_evaluated + n * p,
          num_invalid=s.num_invalid + jnp.sum(slot & ~jnp.isfinite(rs)),
          num_scored=s.num_scored + jnp.sum(slot))

    init = Round(next_proposal=jnp.int32(0), active=jnp.ones(n, bool),
                 found_any=jnp.zeros(n, bool), taken=jnp.zeros(n, bool), take=(c.x, c.d, c.r),
                 best_r=jnp.full(n, -jnp.inf), charged=jnp.zeros(n, jnp.int32),
                 nfe_evaluated=c.nfe_evaluated, num_invalid=c.num_invalid,
                 num_scored=c.num_scored)
    s = jax.lax.while_loop(lambda s: jnp.any(s.active), round_body, init)
    x, d, r = s.take
    r_star = jnp.where(s.found_any, r, c.r_star)
    nfe = c.nfe + jnp.sum(s.charged)
    out = Chains(x=x, d=d, r=r, r_star=r_star,
                 rollover=jnp.where(s.found_any, quota - s.charged, 0), nfe=nfe,
                 nfe_evaluated=s.nfe_evaluated, num_invalid=s.num_invalid,
                 num_scored=s.num_scored)
    return out, (nfe, jnp.max(jnp.where(last, jnp.maximum(r_star, r), r_star)))

  first_best = jnp.max(r)
  init = Chains(x=x, d=d, r=r, r_star=r, rollover=jnp.zeros(n, jnp.int32),
                nfe=jnp.int32(nfe0), nfe_evaluated=jnp.int32(nfe0),
                num_invalid=jnp.int32(invalid0), num_scored=jnp.int32(scored0))
  c, (trace_nfe, trace_best) = jax.lax.scan(advance, init, jnp.arange(start, final))
  return Outcome(x0=c.d.x0, r=c.r, nfe=c.nfe, nfe_evaluated=c.nfe_evaluated,
                 num_invalid=c.num_invalid, num_scored=c.num_scored,
                 trace_nfe=jnp.concatenate([jnp.asarray([nfe0]), trace_nfe]),
                 trace_best=jnp.concatenate([first_best[None], trace_best]))

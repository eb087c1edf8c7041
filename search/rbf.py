"""Rollover budget forcing (RBF, Kim et al. 2025), by default as its authors' released code runs.

`rbf_variant=released` (default) is the control flow of rbf/rbf.py in
KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling, the code behind the paper's numbers:
  1. Each of N chains (2 at the paper's setting) starts from the best of K0 initial noises
     (K0 = 25), scored on their Tweedie estimates at level 0, one NFE each. (Below
     B = N (25 + M), where the released code stops on its assertion or a zero quota, K0 is the
     largest that leaves a quota of one: (B - N M) // N.)
  2. Quota Q = (B - N K0) // (M N) proposals per chain and level. A chain draws proposals one
     at a time from the SDE kernel, one NFE each. The first whose reward beats the chain's
     best-ever reward r* is taken, and the unused quota rolls over to the next level; if the
     quota runs out first, the chain takes the level's best proposal and r* stays.
  3. So through levels 0..M-3. At level M-2 a chain keeps drawing proposals into level M-1
     until the NFE cap: the released loop stops when the next lock-step round of N proposals
     would reach B, so every chain draws I = ceil((B - N K0) / N) - 1 proposals after its
     initial search (498 of 500 NFE spent at the paper's setting).
  4. A chain's output is the Tweedie estimate of its best last-level proposal; output `best`
     (the method's default) keeps the best chain's, which is what the released code returns.

`rbf_variant=literal` reads the paper's Alg. 2 literally: no initial search (K0 = 0: one noise
per chain), Q = (B - N) // ((M - 1) N), and the last level is a level like the others (its first
improving proposal is taken, and the quota still rolled over is dropped), so a reward that
improves easily leaves most of B unspent. Each switch is a knob of its own
(rbf_init_candidates, rbf_last_level, rbf_quota_divisor); docs/methods.md lists every departure
from the released code, and tests/search/test_rbf.py checks the default against a line-by-line
transliteration of the released loop.

Proposal j of chain n at level k always uses the noise fold_in(fold_in(fold_in(key, k), n), j),
so `rbf_parallel` = P > 1 (P proposals drawn at once, the first improving one taken in proposal
order) chooses the same samples and charges the same NFEs as P = 1; `nfe_evaluated` also counts
the speculative and masked rows the batches computed.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers.ground import progress
from samplers.ground import sharding
from samplers.sampler import Denoised
from search import base

VARIANTS = ('released', 'literal')
LAST_LEVELS = ('absorb', 'quota')
INIT_CANDIDATES = 25   # the released configs' init_n_particles

METHOD = base.Method(
    knobs=dict(
        rbf_variant='released',   # released | literal (the departures below at once)
        rbf_parallel=1,           # P proposals drawn at once (same choices as P = 1)
        # Unset: the variant's value.
        rbf_init_candidates=base.Derived(int),  # K0 initial noises per chain (0: one, unsearched);
                                                # released: 25, or what fits a smaller budget
        rbf_last_level=base.Derived(str),       # absorb (draw until the cap) | quota
        rbf_quota_divisor=base.Derived(int),    # Q = (B - N max(K0, 1)) // (divisor N)
    ),
    particle_field='num_chains', output='best', order=5, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int
  init_candidates: int  # c0 = max(K0, 1) noises per chain scored at level 0
  quota: int            # Q
  absorb: bool          # the last level draws until the cap (released) or its quota (literal)
  draws: int            # absorb: the proposals each chain draws after its initial search, I
  parallel: int

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps, least=2)
    variant = cfg.rbf_variant
    if variant not in VARIANTS:
      raise ValueError(f'Unknown search.rbf_variant {variant!r}; valid: {", ".join(VARIANTS)}.')
    released = variant == 'released'

    def pick(field, rel, literal):  # the knob if set, else the variant's value
      value = cfg.get(field)
      return (rel if released else literal) if value is None else value

    last = pick('rbf_last_level', 'absorb', 'quota')
    divisor = pick('rbf_quota_divisor', num_steps, num_steps - 1)
    n, budget = common.num_particles, cfg.budget
    # The released K0 = 25 where the budget holds it; below (where the released code stops on
    # its assertion or a zero quota), the largest K0 that leaves one proposal per level.
    fitting = max(0, (budget - n * divisor) // n) if isinstance(divisor, int) else 0
    k0 = pick('rbf_init_candidates', min(INIT_CANDIDATES, fitting), 0)
    if not isinstance(k0, int) or k0 < 0:
      raise ValueError(f'search.rbf_init_candidates must be an integer >= 0 (0: one initial '
                       f'noise per chain, unsearched), got {k0!r}.')
    if last not in LAST_LEVELS:
      raise ValueError(f'Unknown search.rbf_last_level {last!r}; valid: '
                       f'{", ".join(LAST_LEVELS)}.')
    if not isinstance(divisor, int) or divisor < 1:
      raise ValueError(f'search.rbf_quota_divisor must be an integer >= 1, got {divisor!r}.')
    parallel = cfg.rbf_parallel
    if not isinstance(parallel, int) or parallel < 1:
      raise ValueError(f'search.rbf_parallel must be an integer >= 1, got {parallel!r}.')
    c0 = max(k0, 1)
    quota = (budget - n * c0) // (divisor * n)
    if quota < 1:
      raise base.too_small(method.name, budget, n * (c0 + divisor),
                           f'{n} chains with {c0} initial noise(s) each and one proposal per '
                           f'level (quota divisor {divisor})')
    absorb = last == 'absorb'
    draws = -(-(budget - n * c0) // n) - 1 if absorb else 0
    if absorb and draws < (num_steps - 2) * quota + 1:
      raise ValueError(
          f'search.rbf_quota_divisor={divisor} gives a quota of {quota} per level, which can '
          f'use all {draws} proposals of a chain before its last level; use a divisor of at '
          f'least {num_steps - 1}.')
    return cls(common, n, c0, quota, absorb, draws, parallel)


class Chains(NamedTuple):
  """The chains between levels (the carry of the scan over levels)."""
  x: jax.Array          # [n, ...] states at the current level
  d: Denoised           # their evaluation
  r: jax.Array          # [n] rewards of their Tweedie estimates
  r_star: jax.Array     # [n] the best reward a chain has seen (the one to beat)
  rollover: jax.Array   # [n] unspent quota carried to the next level
  used: jax.Array       # [n] proposals drawn since the initial search
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
  take_index: jax.Array     # [n] its index j
  best_r: jax.Array         # [n] the reward of the level's best proposal so far
  charged: jax.Array        # [n] proposals drawn
  nfe_evaluated: jax.Array
  num_invalid: jax.Array
  num_scored: jax.Array


class Outcome(NamedTuple):
  """What a group of chains returns: outputs and counts; traces [T] over the levels; and each
  chain's choices per level ([n, M - 1]: the proposals drawn and the index of the one taken)."""
  x0: jax.Array
  r: jax.Array
  nfe: jax.Array
  nfe_evaluated: jax.Array
  num_invalid: jax.Array
  num_scored: jax.Array
  trace_nfe: jax.Array
  trace_best: jax.Array
  drawn: jax.Array
  taken: jax.Array


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  """Under a mesh, each device runs its own chains with jax.shard_map: the proposal loop of a
  level stops when that device's chains are done, so no collective runs per level or round;
  counts and traces are combined once at the end."""
  n, devices = config.num_chains, sharding.particle_axis_size()
  if devices == 1:
    out = run_chains(key, sampler, reward, config, cond, 0, n)
  else:
    per = n // devices

    def local(key, sampler, reward, cond):
      first = jax.lax.axis_index(sharding.PARTICLES) * per
      out = run_chains(key, sampler, reward, config, cond, first, per)
      # Per-device counts and traces get a leading axis of 1 to be stacked over devices.
      return out._replace(**{f: jnp.asarray(getattr(out, f))[None] for f in _COUNTS})

    rows, replicated = jax.sharding.PartitionSpec(sharding.PARTICLES), jax.sharding.PartitionSpec()
    out = jax.shard_map(local, in_specs=(replicated,) * 4, out_specs=Outcome(*(rows,) * 10),
                        axis_names={sharding.PARTICLES}, check_vma=False)(
                            key, sampler, reward, cond)
    out = out._replace(nfe=out.nfe.sum(), nfe_evaluated=out.nfe_evaluated.sum(),
                       num_invalid=out.num_invalid.sum(), num_scored=out.num_scored.sum(),
                       trace_nfe=out.trace_nfe.sum(0), trace_best=out.trace_best.max(0))
  return base.finalize(key, config.common, candidates=out.x0, rewards=out.r, log_weights=None,
                       nfe=out.nfe, nfe_evaluated=out.nfe_evaluated, trace_nfe=out.trace_nfe,
                       trace_best=jax.lax.cummax(out.trace_best), num_invalid=out.num_invalid,
                       num_scored=out.num_scored)


_COUNTS = ('nfe', 'nfe_evaluated', 'num_invalid', 'num_scored', 'trace_nfe', 'trace_best')


def initial_states(key, sampler, reward, config, cond, first, count):
  """Chains first..first+count-1 at level 0, each the best of its c0 initial noises (rows
  n c0 .. n c0 + c0 - 1 of one draw for all chains, so a chain's noises never depend on how
  the chains are split across devices): (x, d, r, invalid count). The candidates are evaluated
  one per chain at a time (c0 backbone calls of `count` rows, as the proposal rounds batch), so
  the initial search needs no more memory than the rest of the search."""
  c0 = config.init_candidates
  x = jax.lax.dynamic_slice_in_dim(sampler.init_noise(key, config.num_chains * c0),
                                   first * c0, count * c0)
  by_candidate = jnp.swapaxes(x.reshape((count, c0) + x.shape[1:]), 0, 1)   # [c0, count, ...]

  def evaluate(rows):
    d = sampler.denoise(rows, 0, cond)
    return d, reward(d.x0, cond)

  d, r = jax.lax.map(evaluate, by_candidate)
  chain_major = lambda a: jnp.swapaxes(a, 0, 1).reshape((count * c0,) + a.shape[2:])
  d, r = jax.tree.map(chain_major, (d, r))
  r, bad = base.score_values(r)
  x, d, r = base.best_in_groups((x, d, r), r, c0)
  return x, d, r, bad


def run_chains(key, sampler, reward, config: Config, cond, first, n) -> Outcome:
  """RBF for chains first..first+n-1 of config.num_chains, level by level: one lax.scan over
  levels 0..M-2, each level a while_loop of proposal rounds."""
  p, m = config.parallel, sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  x, d, r, invalid0 = initial_states(init_key, sampler, reward, config, cond, first, n)
  nfe0 = n * config.init_candidates
  chains = first + jnp.arange(n)

  def level(c: Chains, k):
    absorbing = config.absorb & (k == m - 2)   # draws all the chain has left, keeps the best
    quota = jnp.where(absorbing, config.draws - c.used, config.quota + c.rollover)
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
      improving = slot & (rs > c.r_star[:, None]) & ~absorbing
      found = jnp.any(improving, axis=1)
      first_found = jnp.argmax(improving, axis=1)
      masked = jnp.where(slot, rs, -jnp.inf)
      round_best = jnp.argmax(masked, axis=1)
      # The level's best so far (the first on ties); a chain whose every proposal is invalid
      # keeps its first one.
      better = (jnp.max(masked, axis=1) > s.best_r) | (~s.taken & jnp.any(slot, axis=1))
      choice = jnp.where(found, first_found, round_best)
      new = base.pick_in_groups((xs, ds, rs.reshape(-1)), choice, p)
      update = found | (better & ~s.found_any)
      take = jax.tree.map(lambda old, nw: jnp.where(
          update.reshape((n,) + (1,) * (nw.ndim - 1)), nw, old), s.take, new)
      return Round(
          next_proposal=j0 + p, active=s.active & ~found & (j0 + p < quota),
          found_any=s.found_any | found, taken=s.taken | jnp.any(slot, axis=1), take=take,
          take_index=jnp.where(update, j0 + choice, s.take_index),
          best_r=jnp.where(update, jnp.max(masked, axis=1), s.best_r),
          charged=s.charged + jnp.where(found, first_found + 1, jnp.sum(slot, axis=1)),
          nfe_evaluated=s.nfe_evaluated + n * p,
          num_invalid=s.num_invalid + jnp.sum(slot & ~jnp.isfinite(rs)),
          num_scored=s.num_scored + jnp.sum(slot))

    init = Round(next_proposal=jnp.int32(0), active=quota > 0,
                 found_any=jnp.zeros(n, bool), taken=jnp.zeros(n, bool), take=(c.x, c.d, c.r),
                 take_index=jnp.full(n, -1, jnp.int32), best_r=jnp.full(n, -jnp.inf),
                 charged=jnp.zeros(n, jnp.int32), nfe_evaluated=c.nfe_evaluated,
                 num_invalid=c.num_invalid, num_scored=c.num_scored)
    s = jax.lax.while_loop(lambda s: jnp.any(s.active), round_body, init)
    progress.tick(k + 1, m - 1, 'levels')
    x, d, r = s.take
    # Rollover: the quota left when an improving proposal was taken; nothing otherwise.
    out = Chains(x=x, d=d, r=r, r_star=jnp.where(s.found_any, r, c.r_star),
                 rollover=jnp.where(s.found_any, quota - s.charged, 0), used=c.used + s.charged,
                 nfe_evaluated=s.nfe_evaluated, num_invalid=s.num_invalid,
                 num_scored=s.num_scored)
    best = jnp.max(jnp.maximum(out.r_star, jnp.where(absorbing, r, -jnp.inf)))
    return out, (nfe0 + jnp.sum(out.used), best, s.charged, s.take_index)

  init = Chains(x=x, d=d, r=r, r_star=r, rollover=jnp.zeros(n, jnp.int32),
                used=jnp.zeros(n, jnp.int32), nfe_evaluated=jnp.int32(nfe0),
                num_invalid=jnp.int32(invalid0), num_scored=jnp.int32(nfe0))
  c, (trace_nfe, trace_best, drawn, taken) = jax.lax.scan(level, init, jnp.arange(m - 1))
  return Outcome(x0=c.d.x0, r=c.r, nfe=nfe0 + jnp.sum(c.used), nfe_evaluated=c.nfe_evaluated,
                 num_invalid=c.num_invalid, num_scored=c.num_scored,
                 trace_nfe=jnp.concatenate([jnp.asarray([nfe0]), trace_nfe]),
                 trace_best=jnp.concatenate([jnp.max(r)[None], trace_best]),
                 drawn=drawn.T, taken=taken.T)


def rows(config: Config) -> int:
  """Each chain's proposals of one round."""
  return config.num_chains * config.parallel

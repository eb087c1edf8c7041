"""What every search method shares: its declaration, result type, reward scoring, budget checks.

A method is one module in search/ with
  METHOD = base.Method(...)   what the rest of the project asks of it (or METHODS, a tuple of
                              named ones, for a module that implements several variants);
  Config                      a frozen dataclass, built and validated on the host by
                              Config.from_config(search_cfg, temperature, num_steps, method);
  run(key, sampler, reward, config, cond) -> SearchResult, pure, jitted by the caller with
                              `config` static;
  rows(config) -> int         optional: the rows (particles x candidates) it holds or evaluates
                              at once, when more than its particle count; or
  memory_bytes(config, data_shape) -> int
                              optional: the bytes of its own arrays, where rows do not say it
                              (DTS's tree). experiments/search_memory.py refuses, before
                              compiling, a run whose arrays would not fit.
search/__init__.py discovers such modules; nothing else in the project lists them. Budgets are
total NFEs per prompt; one NFE is one backbone evaluation of one particle.
"""

import dataclasses
import types
from typing import Any, Mapping, NamedTuple, Optional

import blackjax.smc.resampling as blackjax_resampling
import jax
import jax.numpy as jnp
import numpy as np

from samplers.ground import checks
from samplers.ground import sharding

OUTPUTS = ('samples', 'best')
# The `search` config fields every method reads, with their defaults (configs/common.py builds
# the section from these and the methods' knobs, each read only by the methods that declare it).
COMMON_FIELDS = dict(
    method='smc',               # any of search.METHODS
    budget=12_800,              # total NFEs per prompt
    num_particles=16,           # chains (sop, svdd, code, rbf); output draws (bon, smc, dts)
    num_runs=1,                 # independent searches per condition, vmapped (a sample set from
                                # methods that output their best); budget per search
    output='samples',           # samples: draws of the method's p* approximation | best
    resampling='systematic',    # how weighted outputs (and SMC) resample: multinomial |
                                # systematic | stratified | residual
    guidance=False,             # DPS-style gradient guidance (differentiable rewards)
    guidance_scale=1.0,         # the score gains guidance_scale / lambda * grad r(x0_hat)
)


@dataclasses.dataclass(frozen=True)
class Derived:
  """A knob without a fixed default: unset (None), the method derives it from the other
  settings. `type` is what a value given on the command line parses to."""
  type: type = int


@dataclasses.dataclass(frozen=True)
class Method:
  """A search method's declaration.

  knobs: the `search.*` config fields the method reads beyond the common ones, with their
    defaults; a `Derived` default is unset, and the method derives the value from the other
    settings. Methods may share a knob only with the same default.
  particle_field: the attribute of its Config that counts the rows (particles, chains,
    samples) split over the mesh's `particles` axis, which must divide over it; None: the
    method runs replicated on every device.
  particle_source: where that count comes from, for the error message.
  output: the search.output of a run of this method alone (the config variant `:NAME`);
    comparisons and sweeps use the config's own.
  order: its place in listings (compare tables, the default method lists); ties by name.
  needs_noise: its candidates (resampled particles, children, proposals, branches) differ only
    through the sampler's noise: on a deterministic (ODE) sampler they are copies of one path,
    so a run there is warned (experiments/search.py: check_sampler).
  needs_gradient: it differentiates the reward (experiments/problem.py refuses a reward that
    is not differentiable, such as a reward service, before compiling).
  sequential_searches: independent searches (prompts, classes, runs) run one after another
    (lax.map) instead of vmapped. For a method whose data-dependent while-loops carry a large
    state (DTS's tree): under vmap a loop whose trip count differs between the searches
    selects its whole carry at every iteration, so each step would cost O(tree) and a run
    O(budget^2) (search/__init__.py: run_batched).
  name, module: filled in by the registry (the module's name, unless given).
  """
  knobs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  particle_field: Optional[str] = None
  particle_source: str = 'search.num_particles'
  output: str = 'samples'
  order: int = 100
  needs_noise: bool = False
  needs_gradient: bool = False
  sequential_searches: bool = False
  name: str = ''
  module: Optional[types.ModuleType] = dataclasses.field(default=None, compare=False)

  @property
  def run(self):
    """The method's run(key, sampler, reward, config, cond) -> SearchResult."""
    return self.module.run

  def rows(self, config) -> int:
    """The rows the method holds or evaluates at once (its module's rows(config), else its
    particle count)."""
    fn = getattr(self.module, 'rows', None)
    if fn is not None:
      return int(fn(config))
    count = getattr(config, self.particle_field, None) if self.particle_field else None
    return int(count) if count else 1
RESAMPLING = ('multinomial', 'systematic', 'stratified', 'residual')
# Particle schedules (search.particle_schedule) of SMC and SVDD: the same count at every level,
# or a linearly decaying one, as the RBF authors' released baselines spend their budget.
SCHEDULES = ('constant', 'linear')


def linear_schedule(units: int, levels: int) -> tuple:
  """Counts c (2 (M - k) - 1) for levels k = 0..M-1 with c = units // M^2: odd multiples of c
  falling linearly to c, summing to c M^2 <= units (500 over 10 levels: 95, 85, ..., 5);
  () when units < M^2."""
  c = units // levels ** 2
  return tuple(c * (2 * (levels - k) - 1) for k in range(levels)) if c >= 1 else ()


def particle_schedule(cfg) -> str:
  """search.particle_schedule, checked."""
  schedule = cfg.get('particle_schedule', 'constant')
  if schedule not in SCHEDULES:
    raise ValueError(f'Unknown search.particle_schedule {schedule!r}; valid: '
                     f'{", ".join(SCHEDULES)}.')
  return schedule


class SearchResult(NamedTuple):
  x0: jax.Array             # [P, ...] the output: `samples` draws, or the best sample ([1, ...])
  reward: jax.Array         # [P]
  nfe: jax.Array            # int32: NFEs the algorithm spent (never more than the budget)
  nfe_evaluated: jax.Array  # int32: rows the backbone evaluated (> nfe where rows are masked)
  trace_nfe: jax.Array      # [T] int32: NFEs spent at each trace point
  trace_best: jax.Array     # [T] best reward found by then (Tweedie rewards before the end)
  num_invalid: jax.Array    # int32: proposals whose reward was NaN or infinite
  num_scored: jax.Array     # int32: proposals scored in all


@dataclasses.dataclass(frozen=True)
class Common:
  """Fields every method has (docs/contract.md, "Config fields")."""
  budget: int
  num_particles: int
  output: str
  temperature: float
  resampling: str

  @classmethod
  def from_config(cls, cfg, temperature: float) -> 'Common':
    budget, particles = cfg.budget, cfg.num_particles
    if not isinstance(budget, int) or budget <= 0:
      raise ValueError(f'search.budget must be a positive integer (NFEs), got {budget!r}.')
    if not isinstance(particles, int) or particles <= 0:
      raise ValueError(f'search.num_particles must be a positive integer, got {particles!r}.')
    output = cfg.output
    if output not in OUTPUTS:
      raise ValueError(f'Unknown search.output {output!r}; valid: {", ".join(OUTPUTS)}.')
    if cfg.resampling not in RESAMPLING:
      raise ValueError(
          f'Unknown search.resampling {cfg.resampling!r}; valid: {", ".join(RESAMPLING)}.')
    check_temperature(temperature)
    if budget > MAX_COUNT:
      raise ValueError(f'search.budget={budget} is past what the int32 NFE counters hold '
                       f'({MAX_COUNT}).')
    return cls(budget, particles, output, float(temperature), cfg.resampling)


MAX_COUNT = int(np.iinfo(np.int32).max)


def check_temperature(temperature) -> None:
  """lambda > 0 and a normal float32: r / lambda must not turn every weight into +-inf."""
  t = float(temperature)
  if not (np.isfinite(t) and t > 0):
    raise ValueError(f'reward.temperature must be a positive finite number, got {temperature}.')
  checks.check_float32('reward.temperature', t)


class BudgetTooSmall(ValueError):
  """search.budget cannot pay for one step of the method (compare leaves such a method out,
  naming why; everywhere else it is an error)."""


def too_small(method: str, budget: int, smallest: int, why: str) -> BudgetTooSmall:
  return BudgetTooSmall(f'search.budget={budget} is too small for {method}: it needs at least '
                        f'{smallest} NFEs ({why}).')


def check_steps(method: str, num_steps: int, least: int = 2) -> None:
  if num_steps < least:
    raise ValueError(f'{method} needs sampler.num_steps >= {least}, got {num_steps}.')


def score_rows(reward, x0, cond):
  """Rewards [N] with NaN/inf replaced by -inf (never selected), and which rows those were
  (int32 [N]). Nothing is reduced across particles, so under a mesh this needs no collective."""
  r = reward(x0, cond)
  if r.shape != x0.shape[:1]:
    raise ValueError(f'the reward returned shape {r.shape} for {x0.shape[0]} samples; '
                     f'it must return one number per sample, shape ({x0.shape[0]},).')
  return mark_invalid(r)


def mark_invalid(r):
  """score_rows for rewards [N] already computed: (r with NaN/inf as -inf, invalid rows)."""
  valid = jnp.isfinite(r)
  return sharding.rows(jnp.where(valid, r, -jnp.inf)), (~valid).astype(jnp.int32)


def check_divides(method: str, counts: dict, devices: int) -> None:
  """Every row count a method runs (beyond its declared particle count, which the mesh
  checks) must divide over the particle axis: {what: count}."""
  bad = {what: c for what, c in counts.items() if c % devices}
  if bad:
    listed = ', '.join(f'{c} ({what})' for what, c in bad.items())
    raise ValueError(f'{method} runs rows that do not divide over the {devices} devices of the '
                     f"mesh's particle axis: {listed}; change search.budget or the method's "
                     'knobs.')


def score_values(r):
  """score_rows for rewards [N] already computed: (r with NaN/inf as -inf, invalid count)."""
  valid = jnp.isfinite(r)
  return sharding.rows(jnp.where(valid, r, -jnp.inf)), jnp.sum(~valid).astype(jnp.int32)


def score(reward, x0, cond):
  """Rewards [N] with NaN/inf replaced by -inf (never selected), and the count of those."""
  r, bad = score_rows(reward, x0, cond)
  return r, jnp.sum(bad)


def normalized_weights(log_w, eligible=None):
  """softmax(log_w) with NaN treated as -inf; where no weight is positive (every proposal
  invalid), uniform over the `eligible` rows (all rows by default)."""
  log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
  finite = jnp.any(jnp.isfinite(log_w))
  fallback = jnp.ones_like(log_w) if eligible is None else eligible.astype(log_w.dtype)
  return jnp.where(finite, jax.nn.softmax(jnp.where(finite, log_w, 0.0)),
                   fallback / jnp.sum(fallback))


def resample(key, log_w, num: int, scheme: str, eligible=None):
  """Ancestor indices [num] drawn by `scheme` from the normalised weights (blackjax).

  Under a mesh the log-weights are all-gathered first and the indices are computed whole on
  every device (identical everywhere); XLA then gathers the chosen particles."""
  return sharding.replicated(
      resample_local(key, sharding.replicated(log_w), num, scheme, eligible))


def resample_local(key, log_w, num: int, scheme: str, eligible=None):
  """`resample` without any sharding constraint (for weights that live on one device)."""
  return getattr(blackjax_resampling, scheme)(key, normalized_weights(log_w, eligible), num)


def finalize(key, common: Common, *, candidates, rewards, log_weights, nfe, nfe_evaluated,
             trace_nfe, trace_best, num_invalid, num_scored, eligible=None) -> SearchResult:
  """Applies `output` to the candidates [P, ...] and their rewards [P]: `best` keeps the argmax
  reward; `samples` draws num_particles by weight (log_weights [P]), or returns the chains as
  they are for methods without weights (log_weights None). nfe: the NFEs the algorithm needs;
  nfe_evaluated: the rows the backbone evaluated (>= nfe where some rows were masked out);
  trace_nfe, trace_best [T]: the anytime trace; num_invalid of num_scored rewards were NaN/inf.

  Invalid rewards are -inf, so neither output picks one while a valid row exists. `eligible`
  [P] bool marks the rows that may be output at all (DTS: the tree's leaves, not its inner or
  unused slots); when every eligible reward is invalid, `best` returns the first eligible row
  and `samples` draws uniformly among them."""
  x0, reward, log_w = candidates, rewards, log_weights
  if common.output == 'best':
    rank = jnp.where(reward > -jnp.inf, reward, jnp.finfo(jnp.float32).min)
    if eligible is not None:
      rank = jnp.where(eligible, rank, -jnp.inf)
    i = jnp.argmax(rank)
    out_x, out_r = x0[i][None], reward[i][None]
  elif log_w is None:
    out_x, out_r = x0, reward
  else:
    idx = resample(key, log_w, common.num_particles, common.resampling, eligible)
    out_x, out_r = x0[idx], reward[idx]
  i32 = lambda v: jnp.asarray(v, jnp.int32)
  return SearchResult(out_x, out_r, i32(nfe), i32(nfe_evaluated), i32(trace_nfe),
                      jnp.asarray(trace_best, jnp.float32), i32(num_invalid), i32(num_scored))


def repeat_rows(tree, k: int):
  """[N, ...] -> [N * k, ...], each row repeated k times consecutively."""
  return jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), tree)


def best_in_groups(tree, scores, k: int):
  """For each group of k consecutive rows (a chain's candidates), the row of highest score
  (the first on ties): [N * k, ...] -> [N, ...]. Selection runs along the group axis only, so
  chains whose candidates sit on one device stay there (no cross-device gather)."""
  n = scores.shape[0] // k
  return pick_in_groups(tree, jnp.argmax(scores.reshape(n, k), axis=1), k)


def pick_in_groups(tree, pick, k: int):
  """Row pick[i] of group i of k consecutive rows: [N * k, ...] -> [N, ...], within groups."""
  select = jax.vmap(lambda group, i: group[i])
  return sharding.rows(jax.tree.map(
      lambda a: select(a.reshape((pick.shape[0], k) + a.shape[1:]), pick), tree))


def take_in_groups(tree, idx):
  """Rows idx[g] of group g, for groups of idx.shape[1] consecutive rows: [G * n, ...] ->
  [G * n, ...] with every row taken from its own group (no row crosses a group)."""
  groups, per = idx.shape
  select = jax.vmap(lambda group, i: group[i])
  return sharding.rows(jax.tree.map(
      lambda a: select(a.reshape((groups, per) + a.shape[1:]), idx).reshape(a.shape), tree))


def take_rows(tree, idx):
  return jax.tree.map(lambda a: a[idx], tree)


def resample_move(key, sampler, reward, cond, k, log_w, count: int, scheme: str, x, d, carried):
  """SMC's resample-move at level k: draws `count` ancestors by log_w (blackjax's `scheme`),
  moves the particles x, their evaluation d and the per-particle arrays `carried` to them,
  then one step of the base kernel and one NFE per particle at level k + 1.
  Returns (x, d, carried, rewards [count], invalid rows [count])."""
  k_res, k_prop = jax.random.split(key)
  idx = resample(k_res, log_w, count, scheme)
  x, d, carried = sharding.rows(take_rows((x, d, carried), idx))
  x = sampler.step(x, d, k, jax.random.normal(k_prop, x.shape, x.dtype))
  d = sampler.denoise(x, k + 1, cond)
  r, bad = score_rows(reward, d.x0, cond)
  return x, d, carried, r, bad


def children(key, sampler, reward, cond, k, x, d, count: int):
  """`count` children of every row from the base kernel at level k, evaluated at k + 1 (the
  children of row i are rows i * count ... (i + 1) * count - 1). Returns (x, d, rewards,
  invalid rows), each [N * count, ...]."""
  xs, ds = sharding.rows(repeat_rows((x, d), count))
  xs = sampler.step(xs, ds, k, jax.random.normal(key, xs.shape, xs.dtype))
  ds = sampler.denoise(xs, k + 1, cond)
  rs, bad = score_rows(reward, ds.x0, cond)
  return xs, ds, rs, bad

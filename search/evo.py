"""EvoSearch (He et al. 2025, arXiv 2505.17618; tinnerhrhe/EvoSearch-codes, SD2.1/evo_pipe.py):
evolutionary search over the initial noise and the intermediate states along the chain.

The population moves down the chain and evolves at G levels e_0 < ... < e_{G-1}
(evo_schedule, fractions of the M levels, floor(f M): 0, 0.4, 0.6, 0.8 as the reference's
0 20 30 40 of 50 steps) with populations P_0, ..., P_G (evo_populations: 42, 26, 26, 26, 30). At generation g
every member, at level e_g, is rolled out to t = 0 by the sampler (M - e_g NFEs) and its sample
scored; on the way it leaves its state after the step from each later e_j (at level e_j + 1) in
generation j's pool, with the rollout's reward. Generation g then draws from its pool (every
rollout so far that passed e_g): the evo_elites best are kept, and P_{g+1} - evo_elites parents
are each the best of a random 90% of the pool (the reference's tournament); each is mutated
(below) and the children continue down the chain to e_{g+1} (the last generation's to t = 0,
where they are scored). The output is the best sample of any rollout.

Mutation (evo_mutation):
  released  as the reference: at the first generation x sqrt(1 - rho^2) + rho z (rho =
            evo_mutation_rate 0.2; Gaussian noise keeps its marginal), later x + s z with s the
            sampler's step noise scale at e_g (the DDIM std there), which widens the marginal.
  marginal  x' = a x + (1 - a) alpha x0 + rho sigma z at every generation (a = sqrt(1 - rho^2);
            alpha, sigma the interpolant's at the state's level; x0 the member's rolled-out
            sample): with eps = (x - alpha x0) / sigma this is alpha x0 + sigma (a eps + rho z),
            the Gaussian mutation of the noise part, so it keeps p_t exactly where x0 is a draw
            of p(x0 | x_t) (an exact SDE rollout) and is the Gaussian mutation at pure noise
            (tests/search/test_evo.py).
evo_restep = True steps the children once more from e_g, as the reference's main loop does
(its children are states after the step from e_g, and the loop then takes that step again);
False continues them from e_g + 1.

Budget: populations scaled by floor(P_j B / B_ref) with B_ref the NFEs of evo_populations
(the reference's schedule spends 100 M NFEs: 5,000 at 50 steps, where the scale is 1).
Departures in docs/methods.md. Under a mesh the members are split over the `particles` axis;
every population must divide over it.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import levels

MUTATIONS = ('released', 'marginal')

METHOD = base.Method(
    knobs=dict(evo_schedule=(0.0, 0.4, 0.6, 0.8),     # evolution levels, fractions of M
               evo_populations=(42, 26, 26, 26, 30),  # P_0..P_G, relative (scaled to budget)
               evo_elites=5,                          # elites kept per generation
               evo_mutation_rate=0.2,                 # rho
               evo_mutation='released',               # released | marginal
               evo_restep=True),                      # the reference's repeated step at e_g
    particle_field='first_population', particle_source='search.budget and evo_populations',
    output='best', order=13, needs_noise=True)


def schedule_levels(fractions, num_steps: int) -> tuple:
  """Levels floor(f M); on short chains the last ones are pulled below M - 1 (each level needs
  a step after it and a later level to roll out to)."""
  ends = [int(math.floor(f * num_steps + 1e-9)) for f in fractions]
  for j in range(len(ends)):
    ends[j] = min(ends[j], num_steps - 2 - (len(ends) - 1 - j))
  return tuple(ends)


def cost(pops, ends, num_steps: int, restep: bool = True) -> int:
  """NFEs: P_0 to e_0, each generation's rollouts (M - e_g), the children onwards."""
  m = num_steps
  total = pops[0] * ends[0]
  nxt = tuple(ends[1:]) + (m,)
  for g, e in enumerate(ends):
    total += pops[g] * (m - e)                                    # rollouts
    total += pops[g + 1] * (nxt[g] - e - (0 if restep else 1))    # the children onwards
  return total


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  populations: tuple   # P_0..P_G, sized to the budget
  ends: tuple          # e_0..e_{G-1}
  elites: int
  rate: float
  mutation: str
  restep: bool

  @property
  def first_population(self) -> int:
    return self.populations[0]

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps, 3)
    fractions = tuple(float(f) for f in cfg.evo_schedule)
    rel = tuple(int(p) for p in cfg.evo_populations)
    if not fractions or any(not 0 <= f < 1 for f in fractions):
      raise ValueError('search.evo_schedule must be one or more fractions in [0, 1) (levels, in '
                       f'units of sampler.num_steps), got {fractions}.')
    if len(fractions) > num_steps - 2:
      raise ValueError(f'search.evo_schedule has {len(fractions)} levels; {num_steps} steps allow '
                       f'at most {num_steps - 2}.')
    ends = schedule_levels(fractions, num_steps)
    if any(a >= b for a, b in zip(ends, ends[1:])) or ends[0] < 0 or any(
        a >= b for a, b in zip(fractions, fractions[1:])):
      raise ValueError(f'search.evo_schedule={fractions} gives levels {ends} of {num_steps} '
                       f'steps; they must increase strictly and stay below {num_steps - 1}.')
    if len(rel) != len(ends) + 1 or any(p < 1 for p in rel):
      raise ValueError(f'search.evo_populations must be {len(ends) + 1} positive sizes (one more '
                       f'than search.evo_schedule), got {rel}.')
    elites, rate = int(cfg.evo_elites), float(cfg.evo_mutation_rate)
    if elites < 0:
      raise ValueError(f'search.evo_elites must be >= 0, got {elites}.')
    if not 0.0 <= rate <= 1.0:
      raise ValueError(f'search.evo_mutation_rate must lie in [0, 1], got {rate}.')
    if cfg.evo_mutation not in MUTATIONS:
      raise ValueError(f'Unknown search.evo_mutation {cfg.evo_mutation!r}; valid: '
                       f'{", ".join(MUTATIONS)}.')
    restep = bool(cfg.evo_restep)
    scale = common.budget / cost(rel, ends, num_steps, restep)
    pops = tuple(int(math.floor(p * scale + 1e-9)) for p in rel)
    if min(pops[1:]) <= elites or pops[0] < 1:
      k = max((elites + 1) / p for p in rel[1:])
      smallest = cost(tuple(int(math.ceil(p * k)) for p in rel), ends, num_steps, restep)
      raise base.too_small(method.name, common.budget, smallest,
                           f'populations {rel} scaled so that every one after the first exceeds '
                           f'the {elites} elites')
    return cls(common, pops, ends, elites, rate, cfg.evo_mutation, restep)


class Pool(NamedTuple):
  """Generation g's pool: states at level e_g + 1 with their rollouts' samples and rewards."""
  x: jax.Array    # [n, ...]
  x0: jax.Array   # [n, ...]
  r: jax.Array    # [n]


def advance(x, start: int, end: int, key, sampler, cond=None):
  """States at level start -> level end (unevaluated), one NFE per level from start."""
  def level(k, x):
    d = sampler.denoise(x, k, cond)
    noise = jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
    return sharding.rows(sampler.step(x, d, k, noise))
  return jax.lax.fori_loop(start, end, level, x)


def rollout(x, start: int, marks, key, sampler, cond=None):
  """States at level `start` run to t = 0: (their states at each level in `marks` (after the
  step from it, at mark + 1), the samples at the last level)."""
  m = sampler.num_steps
  kept, level = [], start
  for mark in marks:
    x = advance(x, level, mark + 1, key, sampler, cond)
    kept.append(x)
    level = mark + 1
  x = advance(x, level, m - 1, key, sampler, cond)
  return kept, sampler.denoise(x, m - 1, cond).x0


def tournament(key, rewards, count: int):
  """`count` winners, each the best of a random 90% of the pool (the reference's selection)."""
  n = rewards.shape[0]
  size = max(1, int(n * 0.9))
  pick = lambda k: (lambda idx: idx[jnp.argmax(rewards[idx])])(
      jax.random.permutation(k, n)[:size])
  return jax.vmap(pick)(jax.random.split(key, count))


def mutate(key, x, x0, g: int, level: int, sampler, config: Config):
  """The children of parents x [n, ...] at `level` (their rollouts' samples x0)."""
  z = sharding.rows(jax.random.normal(key, x.shape, x.dtype))
  rho = config.rate
  a = math.sqrt(1 - rho ** 2)
  if config.mutation == 'marginal':
    t = sampler.grid[level]
    alpha, sigma = sampler.interpolant.alpha(t), sampler.interpolant.sigma(t)
    return a * x + (1 - a) * alpha * x0 + rho * sigma * z
  if g == 0:
    return a * x + rho * z
  return x + sampler.noise_scale(config.ends[g]) * z


class State(NamedTuple):
  best_x0: jax.Array   # [1, ...]
  best_r: jax.Array    # [1]


def _better(state: State, x0, r) -> State:
  r = sharding.replicated(r)
  i = jnp.argmax(r)
  take = r[i] > state.best_r[0]
  return State(jnp.where(take, x0[i][None], state.best_x0), jnp.where(take, r[i][None],
                                                                      state.best_r))


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  pops, ends, m = config.populations, config.ends, sampler.num_steps
  g_count = len(ends)
  base.check_divides('evo', {f'population {j}': p for j, p in enumerate(pops)},
                     sharding.particle_axis_size())
  init_key, loop_key, out_key = jax.random.split(key, 3)
  x = sampler.init_noise(init_key, pops[0])
  x = advance(x, 0, ends[0], jax.random.fold_in(loop_key, 10_000), sampler, cond)
  pools = [[] for _ in ends]
  state = State(jnp.zeros((1,) + tuple(sampler.data_shape)), jnp.full((1,), -jnp.inf))
  reports, costs = [], []
  filled = False
  for g, e in enumerate(ends):
    gen_key = jax.random.fold_in(loop_key, g)
    k_roll, k_sel, k_mut, k_step, k_on = jax.random.split(gen_key, 5)
    kept, x0 = rollout(x, e, ends[g:], k_roll, sampler, cond)
    r, bad = base.score_rows(reward, x0, cond)
    if not filled:   # the output is always a rollout of the search, even if every one is invalid
      state, filled = State(x0[:1], jnp.full((1,), -jnp.inf)), True
    state = _better(state, x0, r)
    reports.append(levels.Report(r, bad))
    costs.append(pops[g] * (m - e) + (pops[0] * ends[0] if g == 0 else 0))
    for j, states in zip(range(g, g_count), kept):
      pools[j].append(Pool(states, x0, r))
    pool = jax.tree.map(lambda *a: jnp.concatenate(a), *pools[g])
    all_r = sharding.replicated(pool.r)
    elite_idx = jax.lax.top_k(all_r, config.elites)[1] if config.elites else jnp.zeros(
        (0,), jnp.int32)
    parent_idx = tournament(k_sel, all_r, pops[g + 1] - config.elites)
    parents = sharding.rows(base.take_rows(pool, parent_idx))
    children = mutate(k_mut, parents.x, parents.x0, g, e + 1, sampler, config)
    x = sharding.rows(jnp.concatenate([pool.x[elite_idx], children]))
    nxt = ends[g + 1] if g + 1 < g_count else m - 1
    if config.restep:   # the reference's main loop takes the step from e_g again
      d = sampler.denoise(x, e, cond)
      x = sharding.rows(sampler.step(x, d, e, jax.random.normal(k_step, x.shape, x.dtype)))
    x = advance(x, e + 1, nxt, k_on, sampler, cond)
    if g + 1 < g_count:
      costs[-1] += pops[g + 1] * (nxt - e - (0 if config.restep else 1))
  x0 = sampler.denoise(x, m - 1, cond).x0
  r, bad = base.score_rows(reward, x0, cond)
  state = _better(state, x0, r)
  reports.append(levels.Report(r, bad))
  costs.append(pops[-1] * (m - ends[-1] - (0 if config.restep else 1)))
  assert sum(costs) == cost(pops, ends, m, config.restep), (costs, pops, ends)
  best = jnp.concatenate([jnp.max(rep.rewards)[None] for rep in reports])
  return base.finalize(out_key, config.common, candidates=state.best_x0, rewards=state.best_r,
                       log_weights=None, nfe=sum(costs), nfe_evaluated=sum(costs),
                       trace_nfe=jnp.cumsum(jnp.asarray(costs)),
                       trace_best=jax.lax.cummax(best),
                       num_invalid=sum(jnp.sum(rep.invalid) for rep in reports),
                       num_scored=sum(pops[:g_count]) + pops[-1])


def rows(config: Config) -> int:
  """The largest pool (every rollout that passed the last evolution level)."""
  return max(config.populations[0], sum(config.populations[:len(config.ends)]))

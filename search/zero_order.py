"""Zero-order search over the initial noise (Ma et al. 2025; tt-scale-flux's search), and its
random-search special case.

The sampler's probability-flow ODE maps an initial noise eps to a sample deterministically,
so search can move in noise space. Each of N chains starts from a pivot noise eps ~ N(0, I),
run to t = 0 with the ODE (M NFEs) and scored. Every round draws K neighbours of the pivot,
  sphere  eps' = eps + r sqrt(D) u / |u|         (u ~ N(0, I); D = the data dimension)
  ball    eps' = eps + r sqrt(D) u / |u| * U^(1/D)  (U ~ Uniform(0, 1): uniform in the ball)
runs each to t = 0 with the ODE, and moves the pivot to the best neighbour when it beats the
pivot (zo_keep_pivot; with False the pivot always moves to the best neighbour, as Ma et al.
describe the step). The radius is relative to sqrt(D), the norm of a typical noise.

random_search draws the K candidates of every round fresh from N(0, I) instead and keeps the
best: best-of-N over initial noises with the ODE, grouped by chain.

Budget: rounds R = (B - N M) // (N K M), NFE = N M (1 + R K); unset, K is as many as fit
one round, at most 4 (K = min(4, (B - N M) // (N M))). The sampler's own SDE setting is
ignored: both always integrate the ODE of its interpolant, on its grid.
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import levels

NEIGHBORHOODS = ('sphere', 'ball')
_KNOBS = dict(
    zo_neighbors=base.Derived(int),  # K candidates per chain and round (unset: as many as fit
                                     # one round, at most 4)
    zo_radius=0.5,              # neighbourhood radius, in units of sqrt(D)
    zo_neighborhood='sphere',   # sphere | ball
    zo_keep_pivot=True,         # the pivot moves only when a neighbour beats it
)

METHODS = (
    base.Method(knobs=_KNOBS, particle_field='num_chains', output='best', order=10,
                name='zero_order'),
    base.Method(knobs=_KNOBS, particle_field='num_chains', output='best', order=11,
                name='random_search'),
)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int       # N
  num_neighbors: int    # K
  num_rounds: int       # R, from the budget
  radius: float
  neighborhood: str
  keep_pivot: bool
  random: bool          # random_search: fresh candidates, no pivot

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    n, m = common.num_particles, num_steps
    if cfg.get('zo_neighbors') is None:
      k = max(1, min(4, (common.budget - n * m) // (n * m)))
    else:
      k = int(cfg.zo_neighbors)
    if k < 1:
      raise ValueError(f'search.zo_neighbors must be >= 1, got {k}.')
    radius = float(cfg.zo_radius)
    if not (math.isfinite(radius) and radius > 0):
      raise ValueError(f'search.zo_radius must be a positive number, got {radius}.')
    if cfg.zo_neighborhood not in NEIGHBORHOODS:
      raise ValueError(f'Unknown search.zo_neighborhood {cfg.zo_neighborhood!r}; valid: '
                       f'{", ".join(NEIGHBORHOODS)}.')
    rounds = (common.budget - n * m) // (n * k * m)
    if rounds < 1:
      raise base.too_small(method.name, common.budget, n * m * (1 + k),
                           f'{n} pivots and one round of {k} neighbours, {m} steps each')
    return cls(common, n, k, rounds, radius, cfg.zo_neighborhood, bool(cfg.zo_keep_pivot),
               method.name == 'random_search')


def ode_samples(sampler, eps, cond):
  """The probability-flow ODE's samples of standard normal noises eps [n, ...] (M NFEs per
  row), whatever the sampler's own `sde` flag."""
  ode = sampler.replace(sde=False)
  return ode.integrate(ode.noise_state(eps), cond)


def neighbours(key, pivots, config: Config):
  """K candidates per pivot [N * K, ...], the K of each chain consecutive."""
  eps = base.repeat_rows(pivots, config.num_neighbors)
  u = sharding.rows(jax.random.normal(key, eps.shape, eps.dtype))
  if config.random:
    return u
  dim = math.prod(eps.shape[1:])
  flat = u.reshape(u.shape[0], -1)
  direction = flat / jnp.linalg.norm(flat, axis=1, keepdims=True)
  length = config.radius * math.sqrt(dim)
  if config.neighborhood == 'ball':
    radial = jax.random.uniform(jax.random.fold_in(key, 1), (u.shape[0], 1))
    length = length * radial ** (1.0 / dim)
  return eps + (length * direction).reshape(eps.shape)


class State(NamedTuple):
  """The chains between rounds (the scan's carry)."""
  pivot: jax.Array   # [N, ...] each chain's pivot noise
  x0: jax.Array      # [N, ...] its ODE sample
  r: jax.Array       # [N] that sample's reward


def init(key, sampler, reward, config: Config, cond=None):
  """(State, Report) of N pivot noises run to t = 0 by the ODE and scored."""
  pivot = sharding.rows(jax.random.normal(key, (config.num_chains,) + tuple(sampler.data_shape)))
  x0 = ode_samples(sampler, pivot, cond)
  r, bad = base.score_rows(reward, x0, cond)
  return State(pivot, x0, r), levels.Report(r, bad)


def step(state: State, i, loop_key, sampler, reward, config: Config, cond=None):
  """Round i: K neighbours of every pivot run by the ODE and scored; the pivot moves to the
  best one (when it beats the pivot, with zo_keep_pivot or random search). The report's
  rewards are the best each chain has seen this round; everything stays per chain (the
  reductions over chains happen once, after the loop: each chain's rounds stay on its
  device)."""
  n, kn = config.num_chains, config.num_neighbors
  pivot, x0, r = state
  eps = neighbours(jax.random.fold_in(loop_key, i), pivot, config)
  cand_x0 = ode_samples(sampler, eps, cond)
  cand_r, bad = base.score_rows(reward, cand_x0, cond)
  best_eps, best_x0, best_r = base.best_in_groups((eps, cand_x0, cand_r), cand_r, kn)
  move = best_r > r if (config.keep_pivot or config.random) else jnp.ones_like(r, bool)
  choose = lambda new, old: jnp.where(move.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
  state = State(*sharding.rows((choose(best_eps, pivot), choose(best_x0, x0),
                                jnp.where(move, best_r, r))))
  return state, levels.Report(jnp.maximum(best_r, r), bad.reshape(n, kn).sum(axis=1))


def finish(state: State) -> levels.Output:
  return levels.Output(state.x0, state.r)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kn, m = config.num_chains, config.num_neighbors, sampler.num_steps
  init_key, loop_key, out_key = jax.random.split(key, 3)
  state, first = init(init_key, sampler, reward, config, cond)
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  return levels.drive(out_key, config.common, state, first,
                      [levels.Segment(advance, jnp.arange(config.num_rounds))], finish,
                      costs=[n * m] + [n * kn * m] * config.num_rounds,
                      scored=n * (1 + config.num_rounds * kn))[0]


def rows(config: Config) -> int:
  """Each chain's pivot and neighbours."""
  return config.num_chains * (config.num_neighbors + 1)

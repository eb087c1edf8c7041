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
import math

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base

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


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kn, m = config.num_chains, config.num_neighbors, sampler.num_steps
  init_key, loop_key, out_key = jax.random.split(key, 3)
  pivot = sharding.rows(jax.random.normal(init_key, (n,) + tuple(sampler.data_shape)))
  x0 = ode_samples(sampler, pivot, cond)
  r, invalid = base.score_rows(reward, x0, cond)

  def round_(carry, i):
    pivot, x0, r, invalid = carry
    eps = neighbours(jax.random.fold_in(loop_key, i), pivot, config)
    cand_x0 = ode_samples(sampler, eps, cond)
    cand_r, bad = base.score_rows(reward, cand_x0, cond)
    best_eps, best_x0, best_r = base.best_in_groups((eps, cand_x0, cand_r), cand_r, kn)
    move = best_r > r if (config.keep_pivot or config.random) else jnp.ones_like(r, bool)
    choose = lambda new, old: jnp.where(move.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    carry = sharding.rows((choose(best_eps, pivot), choose(best_x0, x0),
                           jnp.where(move, best_r, r)))
    kept = jnp.maximum(best_r, r)   # the best this chain has seen this round, for the trace
    return carry + (invalid + bad.reshape(n, kn).sum(axis=1),), kept

  carry, seen = jax.lax.scan(round_, (pivot, x0, r, invalid), jnp.arange(config.num_rounds))
  _, x0, r_final, invalid = carry
  rounds = config.num_rounds
  # Reductions over chains happen once, after the loop: each chain's rounds stay on its device.
  trace_best = jax.lax.cummax(jnp.concatenate([jnp.max(r)[None], jnp.max(seen, axis=1)]))
  trace_nfe = n * m * (1 + kn * jnp.arange(rounds + 1))
  nfe = n * m * (1 + rounds * kn)
  return base.finalize(out_key, config.common, candidates=x0, rewards=r_final,
                       log_weights=None, nfe=nfe, nfe_evaluated=nfe, trace_nfe=trace_nfe,
                       trace_best=trace_best, num_invalid=jnp.sum(invalid),
                       num_scored=n * (1 + rounds * kn))


def rows(config: Config) -> int:
  """Each chain's pivot and neighbours."""
  return config.num_chains * (config.num_neighbors + 1)

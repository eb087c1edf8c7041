"""ε-greedy search over the step noise at every level (NTS's EPS_GREEDY, rvignav/diffusion-tts,
edm/main.py; arXiv 2506.03164).

Each of N chains (search.num_particles) starts from its own x_{t_0}. At every level k it searches
the noise z of its step k -> k + 1 by K rounds of local search: a pivot z ~ N(0, I) is drawn;
each round draws C candidates (nts_candidates), each with probability 1 - eps (nts_eps) the
pivot moved by s * lambda * sqrt(D) along a uniform direction (s ~ Uniform(0, 1), lambda =
nts_radius, D the data dimension), else a fresh N(0, I) noise. Every candidate takes the step
(the sampler's kernel with that noise) and its Tweedie estimate at level k + 1 is scored (one
NFE); the best candidate of the round becomes the pivot, whether or not it beats the old one.
After K rounds the chain moves to the last round's best candidate. The output is the chains'
Tweedie estimates at the last level (`best`: the best of them).

Budget: the first evaluation costs N; levels 0..M-2 cost N K C each, so K = (B - N) //
(N C (M - 1)) (the reference: K = 20, C = 4). Departures from the reference are listed in
docs/methods.md. Under a mesh the chains are split over the `particles` axis, each chain's C
candidates on its device; nothing crosses devices inside the loop.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import levels

METHOD = base.Method(
    knobs=dict(nts_candidates=4,                  # C candidates per round (the reference's N)
               nts_iterations=base.Derived(int),  # K rounds per level (unset: all that fit)
               nts_eps=0.4,                       # probability of a fresh noise
               nts_radius=0.15),                  # lambda, in units of sqrt(D)
    particle_field='num_chains', output='best', order=8, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_chains: int       # N
  num_candidates: int   # C
  num_rounds: int       # K
  eps: float
  radius: float

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    n, c = common.num_particles, int(cfg.nts_candidates)
    if c < 1:
      raise ValueError(f'search.nts_candidates must be >= 1, got {c}.')
    eps, radius = float(cfg.nts_eps), float(cfg.nts_radius)
    if not 0.0 <= eps <= 1.0:
      raise ValueError(f'search.nts_eps must lie in [0, 1], got {eps}.')
    if not (math.isfinite(radius) and radius >= 0):
      raise ValueError(f'search.nts_radius must be a non-negative number, got {radius}.')
    fit = (common.budget - n) // (n * c * (num_steps - 1))
    k = fit if cfg.get('nts_iterations') is None else int(cfg.nts_iterations)
    if k < 1 or k > fit:
      smallest = n + n * c * (num_steps - 1) * max(k, 1)
      raise base.too_small(method.name, common.budget, smallest,
                           f'{n} chains, {max(k, 1)} rounds of {c} candidates at each of '
                           f'{num_steps - 1} levels')
    return cls(common, n, c, k, eps, radius)


def candidates(key, pivots, config: Config):
  """C candidate noises per chain [N * C, ...] (a chain's C consecutive) around pivots [N, ...]."""
  z = base.repeat_rows(pivots, config.num_candidates)
  k_dir, k_len, k_fresh, k_pick = jax.random.split(key, 4)
  u = sharding.rows(jax.random.normal(k_dir, z.shape, z.dtype))
  flat = u.reshape(u.shape[0], -1)
  unit = (flat / jnp.linalg.norm(flat, axis=1, keepdims=True)).reshape(z.shape)
  dim = math.prod(z.shape[1:])
  expand = lambda v: v.reshape((-1,) + (1,) * (z.ndim - 1))
  length = jax.random.uniform(k_len, z.shape[:1]) * config.radius * math.sqrt(dim)
  fresh = sharding.rows(jax.random.normal(k_fresh, z.shape, z.dtype))
  perturb = jax.random.uniform(k_pick, z.shape[:1]) < 1.0 - config.eps
  return jnp.where(expand(perturb), z + expand(length) * unit, fresh)


def step(state: levels.Chains, k, loop_key, sampler, reward, config: Config, cond=None):
  """Level k -> k + 1: K rounds of C candidates per chain; the chain takes the last round's
  best. The report's rewards are each chain's best candidate of the level."""
  n, c = config.num_chains, config.num_candidates
  level_key = jax.random.fold_in(loop_key, k)
  xs, ds = sharding.rows(base.repeat_rows((state.x, state.d), c))
  pivot = sharding.rows(jax.random.normal(jax.random.fold_in(level_key, config.num_rounds), state.x.shape))

  def round_(carry, i):
    pivot, _, _, _, best_seen = carry
    z = candidates(jax.random.fold_in(level_key, i), pivot, config)
    x_new = sampler.step(xs, ds, k, z)
    d_new = sampler.denoise(x_new, k + 1, cond)
    r, bad = base.score_rows(reward, d_new.x0, cond)
    z, x_new, d_new, r_best = base.best_in_groups((z, x_new, d_new, r), r, c)
    carry = sharding.rows((z, x_new, d_new, r_best, jnp.maximum(best_seen, r_best)))
    return carry, bad.reshape(n, c).sum(axis=1)

  empty = (pivot, state.x, state.d, jnp.full((n,), -jnp.inf), jnp.full((n,), -jnp.inf))
  (_, x, d, r, best_seen), bad = jax.lax.scan(round_, empty, jnp.arange(config.num_rounds))
  return levels.Chains(x, d, r), levels.Report(best_seen, bad.sum(axis=0))


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, m = config.num_chains, sampler.num_steps
  per_level = n * config.num_rounds * config.num_candidates
  init_key, loop_key, out_key = jax.random.split(key, 3)
  x = sampler.init_noise(init_key, n)
  d = sampler.denoise(x, 0, cond)
  r, bad = base.score_rows(reward, d.x0, cond)
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  return levels.drive(out_key, config.common, levels.Chains(x, d, r), levels.Report(r, bad),
                      [levels.Segment(advance, jnp.arange(m - 1))], levels.chains_output,
                      costs=[n] + [per_level] * (m - 1), scored=n + per_level * (m - 1))[0]


def rows(config: Config) -> int:
  """Each chain's candidates of one round, evaluated together."""
  return config.num_chains * config.num_candidates

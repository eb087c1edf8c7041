"""Spectral evolution search (SES; DiffSynth-Studio's `ses_search`, arXiv 2602.03208): a
cross-entropy method over the low-frequency wavelet band of the initial noise.

One base noise z ~ N(0, I) is drawn; its Haar (db1) wavelet decomposition over the two spatial
axes, `ses_level` levels deep, splits it into the low band c (one coefficient per
2^L x 2^L block: the block's sum / 2^L) and the high bands, which stay fixed. Every generation
draws a population of P low bands c ~ N(mu, diag(sigma^2)) (mu = 0, sigma^2 = 1 at first: the
low band of white noise is white noise), puts each into z in place of z's own (the inverse
transform with z's high bands: z + (c - c_z) / 2^L spread over each block, so every candidate
is again N(0, I) noise), runs it to t = 0 with the sampler's probability-flow ODE (the
reference's preview) and scores it. The elites are the k best candidates seen in all
generations so far; mu and sigma^2 become their mean and unbiased variance (+ 1e-7). The
output is the best candidate seen, whose ODE sample is the preview itself.

Budget: E = B // M evaluations of M NFEs, in G = E // P whole generations (the reference's
default, 50 evaluations of populations of 10, is whole); NFE = G P M. Data without two
spatial axes (2D points) has no band to split: the whole noise is searched. Departures from
the reference are listed in docs/methods.md.
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
from search import zero_order

METHOD = base.Method(
    knobs=dict(ses_popsize=10,   # P candidates per generation (the reference's popsize)
               ses_elites=5,     # k elites, over every generation so far (k_elites)
               ses_level=4),     # Haar levels of the low band (dwt_level); at most what the
                                 # spatial size divides by
    particle_field='popsize', particle_source='search.ses_popsize', output='best', order=12)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  popsize: int           # P
  elites: int            # k
  level: int             # L, as asked (band_level caps it to the data's size)
  generations: int       # G

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    p, k, level = int(cfg.ses_popsize), int(cfg.ses_elites), int(cfg.ses_level)
    if p < 2:
      raise ValueError(f'search.ses_popsize must be >= 2, got {p}.')
    if not 1 <= k <= p:
      raise ValueError(f'search.ses_elites must be between 1 and search.ses_popsize ({p}), '
                       f'got {k}.')
    if level < 0:
      raise ValueError(f'search.ses_level must be >= 0, got {level}.')
    generations = common.budget // num_steps // p
    if generations < 1:
      raise base.too_small(method.name, common.budget, p * num_steps,
                           f'one generation of {p} candidates, {num_steps} steps each')
    return cls(common, p, k, level, generations)


def band_level(data_shape, level: int) -> int:
  """The Haar levels used on data [H, W, C]: `level`, or fewer where H or W does not divide by
  2^level; 0 (the whole noise) for data without two spatial axes."""
  if len(data_shape) != 3:
    return 0
  h, w = data_shape[:2]
  while level > 0 and (h % 2 ** level or w % 2 ** level):
    level -= 1
  return level


def low_band(z, level: int):
  """The Haar low band [n, H/2^L, W/2^L, C] of noises z [n, H, W, C]: each block's sum / 2^L
  (orthonormal: white noise has a white low band); z itself at level 0."""
  if level == 0:
    return z
  b = 2 ** level
  n, h, w, c = z.shape
  return z.reshape(n, h // b, b, w // b, b, c).sum(axis=(2, 4)) / b


def with_low_band(z, band, level: int):
  """Noises [n, ...]: z [1, ...] with its low band replaced by band [n, ...] and its high bands
  kept (the inverse Haar transform)."""
  if level == 0:
    return band
  b = 2 ** level
  delta = (band - low_band(z, level)) / b
  return z + jnp.repeat(jnp.repeat(delta, b, axis=1), b, axis=2)


class State(NamedTuple):
  """The search between generations (the scan's carry)."""
  mu: jax.Array        # [D] the band distribution's mean
  var: jax.Array       # [D] its variance
  elite_c: jax.Array   # [k, D] the elites' bands
  elite_r: jax.Array   # [k] their rewards (-inf: no elite yet, or an invalid one)
  best_x0: jax.Array   # [1, ...] the best candidate's ODE sample
  best_r: jax.Array    # [1] its reward
  filled: jax.Array    # bool: best_x0 holds a candidate (the first one while all are invalid)


def init_state(sampler, config: Config, level: int, z) -> State:
  dim = math.prod(low_band(z, level).shape[1:])
  return State(jnp.zeros((dim,)), jnp.ones((dim,)), jnp.zeros((config.elites, dim)),
               jnp.full((config.elites,), -jnp.inf), jnp.zeros((1,) + tuple(sampler.data_shape)),
               jnp.full((1,), -jnp.inf), jnp.zeros((), bool))


def generation(state: State, key, z, level: int, sampler, reward, config: Config, cond=None):
  """One generation: P bands drawn, run by the ODE and scored; the best so far and the elites
  updated, then mu and sigma^2 from the elites."""
  band_shape = low_band(z, level).shape[1:]
  std = jnp.sqrt(jnp.maximum(state.var, 1e-9))
  c = sharding.rows(state.mu + jax.random.normal(key, (config.popsize, state.mu.size)) * std)
  eps = with_low_band(z, c.reshape((config.popsize,) + band_shape), level)
  x0 = zero_order.ode_samples(sampler, sharding.rows(eps), cond)
  r, bad = base.score_rows(reward, x0, cond)
  r_all = sharding.replicated(r)
  i = jnp.argmax(r_all)                       # the first of the generation's best
  # Strictly better, as the reference's `score > best`; the very first candidate stands in
  # while every reward is invalid, so the output is always a candidate of the search.
  better = (r_all[i] > state.best_r[0]) | ~state.filled
  best_x0 = jnp.where(better, x0[i][None], state.best_x0)
  best_r = jnp.where(better, r_all[i][None], state.best_r)
  # The elites: the k best of the old elites followed by this generation (a stable sort, as
  # Python's list.sort); invalid rewards (-inf) never count as elites.
  pool_r = jnp.concatenate([state.elite_r, r_all])
  pool_c = jnp.concatenate([state.elite_c, sharding.replicated(c)])
  top_r, idx = jax.lax.top_k(pool_r, config.elites)
  top_c = pool_c[idx]
  valid = (top_r > -jnp.inf)[:, None]
  n = jnp.sum(valid)
  mean = jnp.sum(jnp.where(valid, top_c, 0.0), axis=0) / jnp.maximum(n, 1)
  var = (jnp.sum(jnp.where(valid, (top_c - mean) ** 2, 0.0), axis=0) / jnp.maximum(n - 1, 1)
         + 1e-7)
  state = State(jnp.where(n >= 1, mean, state.mu), jnp.where(n >= 2, var, state.var),
                top_c, top_r, best_x0, best_r, jnp.ones((), bool))
  return state, levels.Report(r, bad)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  p, m, g = config.popsize, sampler.num_steps, config.generations
  base_key, first_key, loop_key, out_key = jax.random.split(key, 4)
  level = band_level(sampler.data_shape, config.level)
  z = jax.random.normal(base_key, (1,) + tuple(sampler.data_shape))
  step = functools.partial(generation, z=z, level=level, sampler=sampler, reward=reward,
                           config=config, cond=cond)
  state, first = step(init_state(sampler, config, level, z), first_key)
  advance = lambda state, i: step(state, jax.random.fold_in(loop_key, i))
  segments = [levels.Segment(advance, jnp.arange(g - 1))] if g > 1 else []
  return levels.drive(out_key, config.common, state, first, segments,
                      lambda s: levels.Output(s.best_x0, s.best_r),
                      costs=[p * m] * g, scored=p * g)[0]

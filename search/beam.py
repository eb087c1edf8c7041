"""Beam search over paths: the baseline of the classical-search study of diffusion inference
scaling (Diffusion-inference-scaling).

N beams start from N initial noises. At every level each beam draws K children from the base
kernel (one NFE each), and the N children of highest Tweedie reward among all N K of them
become the next beams: a beam may leave no child, another several. That is SVDD's selection
made across chains instead of within each one. K = (budget - N) // (N (M - 1)), as for SVDD.

Under a device mesh the children's rewards are all-gathered at every level (every device then
picks the same N) and XLA gathers the chosen children.

Invalid rewards rank below every valid one, so an invalid child is kept only when fewer than N
children are valid. The global selection can collapse every beam onto one region: where the
reward is highest next to where it is invalid, every child of the last level can be invalid,
and the output's reward with them (tests/search/test_invalid_rewards.py measures it).
"""

import dataclasses

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import code

METHOD = base.Method(particle_field='num_chains', output='best', order=9)


@dataclasses.dataclass(frozen=True)
class Config(code.Config):

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    return cls.sized(cfg, temperature, num_steps, method, 1)


def select(rewards, n: int):
  """Indices of the n highest rewards [N K] (invalid ones are -inf: last)."""
  return jax.lax.top_k(rewards, n)[1]


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kc, m = config.num_chains, config.num_candidates, sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  x = sampler.init_noise(init_key, n)
  d = sampler.denoise(x, 0, cond)
  r, bad_first = base.score_rows(reward, d.x0, cond)

  def level(carry, k):
    x, d = carry
    xs, ds, rs, bad = base.children(jax.random.fold_in(loop_key, k), sampler, reward, cond, k,
                                    x, d, kc)
    top = select(sharding.replicated(rs), n)   # across every beam's children
    x, d, r = sharding.rows(base.take_rows((xs, ds, rs), top))
    return (x, d), (r, bad)

  (x, d), (r_by_level, bad_by_level) = jax.lax.scan(level, (x, d), jnp.arange(m - 1))
  r_last = r_by_level[-1]
  trace_nfe = n + n * kc * jnp.arange(m)
  trace_best = jax.lax.cummax(jnp.max(jnp.concatenate([r[None], r_by_level]), axis=1))
  nfe = n + n * kc * (m - 1)
  return base.finalize(key, config.common, candidates=d.x0, rewards=r_last, log_weights=None,
                       nfe=nfe, nfe_evaluated=nfe, trace_nfe=trace_nfe,
                       trace_best=trace_best,
                       num_invalid=jnp.sum(bad_first) + jnp.sum(bad_by_level),
                       num_scored=nfe)


rows = code.rows   # each chain's candidates, evaluated together

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
import functools

import jax
import jax.numpy as jnp

from samplers.ground import sharding
from search import base
from search import code
from search import levels

METHOD = base.Method(particle_field='num_chains', output='best', order=9, needs_noise=True)


@dataclasses.dataclass(frozen=True)
class Config(code.Config):

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    return cls.sized(cfg, temperature, num_steps, method, 1)


def select(rewards, n: int):
  """Indices of the n highest rewards [N K] (invalid ones are -inf: last)."""
  return jax.lax.top_k(rewards, n)[1]


def step(state: code.State, k, loop_key, sampler, reward, config: Config, cond=None):
  """Level k -> k + 1: K children of every beam, the N best of all of them kept."""
  xs, ds, rs, bad = base.children(jax.random.fold_in(loop_key, k), sampler, reward, cond, k,
                                  state.x, state.d, config.num_candidates)
  top = select(sharding.replicated(rs), config.num_chains)   # across every beam's children
  x, d, r = sharding.rows(base.take_rows((xs, ds, rs), top))
  return code.State(x, d, r), levels.Report(r, bad)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  n, kc, m = config.num_chains, config.num_candidates, sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  state, first = code.init(init_key, sampler, reward, config, cond)
  advance = functools.partial(step, loop_key=loop_key, sampler=sampler, reward=reward,
                              config=config, cond=cond)
  costs = [n] + [n * kc] * (m - 1)
  return levels.drive(key, config.common, state, first,
                      [levels.Segment(advance, jnp.arange(m - 1))], levels.chains_output,
                      costs=costs, scored=sum(costs))[0]


rows = code.rows   # each chain's candidates, evaluated together

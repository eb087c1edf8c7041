"""Best-of-N: N = budget // M independent samples; keep the highest reward.

`samples` output draws num_particles from the N samples with weights exp(r / lambda)
(self-normalised importance resampling towards the tilted target); `best` keeps the argmax.
"""

import dataclasses

import jax
import jax.numpy as jnp

from search import base

METHOD = base.Method(particle_field='num_samples',
                     particle_source='search.budget // sampler.num_steps', order=0)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_samples: int  # N

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    n = common.budget // num_steps
    if n < 1:
      raise base.too_small(method.name, common.budget, num_steps, f'one sample of {num_steps} steps')
    return cls(common, n)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  sample_key, out_key = jax.random.split(key)
  result = sampler.sample(sample_key, config.num_samples, cond)
  r, invalid = base.score(reward, result.x0, cond)
  m = sampler.num_steps
  trace_nfe = m * jnp.arange(1, config.num_samples + 1)
  return base.finalize(out_key, config.common, candidates=result.x0, rewards=r,
                       log_weights=r / config.common.temperature, nfe=result.nfe,
                       nfe_evaluated=result.nfe, trace_nfe=trace_nfe,
                       trace_best=jax.lax.cummax(r), num_invalid=invalid,
                       num_scored=config.num_samples)

"""SVDD (Li et al. 2024): each of N chains draws K children from the base kernel at every level
and keeps the one whose Tweedie estimate has the highest reward (the alpha -> 0 limit of
sampling children in proportion to exp(v / alpha)). It is CoDe with block size 1."""

import dataclasses

from search import base
from search import code


METHOD = base.Method(particle_field='num_chains', order=3)


@dataclasses.dataclass(frozen=True)
class Config(code.Config):

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    return cls.sized(cfg, temperature, num_steps, method, 1)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  return code.run(key, sampler, reward, config, cond)

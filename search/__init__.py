"""Inference-time search methods, chosen by `search.method`.

Every method: `Config.from_config(search_cfg, temperature, num_steps)` validates on the host
(before any compilation) and sizes the method to the NFE budget; `run(key, sampler, reward,
config, cond)` is a pure function, jitted with `config` static, returning `base.SearchResult`.
"""

import jax

from search import base
from search import bon
from search import code
from search import dts
from search import rbf
from search import smc
from search import sop
from search import svdd

METHODS = ('bon', 'sop', 'smc', 'svdd', 'code', 'rbf', 'dts', 'dts_star')
__all__ = ['base', 'METHODS', 'get_method', 'make_config', 'run_batched']
_MODULES = {'bon': bon, 'sop': sop, 'smc': smc, 'svdd': svdd, 'code': code, 'rbf': rbf,
            'dts': dts, 'dts_star': dts}


def get_method(name: str):
  if name not in _MODULES:
    raise ValueError(f'Unknown search.method {name!r}; valid: {", ".join(METHODS)}.')
  return _MODULES[name]


def make_config(search_cfg, temperature: float, num_steps: int):
  """The method's validated, budget-sized static config."""
  module = get_method(search_cfg.method)
  if search_cfg.method in ('dts', 'dts_star'):
    return module.Config.from_config(search_cfg, temperature, num_steps, search_cfg.method)
  return module.Config.from_config(search_cfg, temperature, num_steps)


def run_batched(method: str, config, reward, keys, sampler, conds):
  """Independent prompts/conditions, vmapped: keys [B], conds [B, ...] -> batched results."""
  fn = get_method(method).run
  return jax.vmap(lambda k, c: fn(k, sampler, reward, config, c))(keys, conds)

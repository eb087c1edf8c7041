"""Inference-time search methods, chosen by `search.method`, discovered from this package.

Every module here that declares `METHOD = base.Method(...)` (or a tuple `METHODS` of named
ones) is a method; its name is the module's (samplers/ground/registry.py, the project's one
registration style). Adding a method is adding its file: its knobs and
defaults, its particle count for the mesh and its default output are all in its declaration
(search/base.py: Method), and the configs, the mesh check, compare, sweeps and the CLI's
variant tokens read them from here.

Every method: `Config.from_config(search_cfg, temperature, num_steps, method)` validates on
the host (before any compilation) and sizes the method to the NFE budget; `run(key, sampler,
reward, config, cond)` is a pure function, jitted with `config` static, returning
`base.SearchResult`.
"""

import jax
from jax.sharding import PartitionSpec as P

from samplers.ground import registry
from samplers.ground import sharding
from search import base

REGISTRY = registry.Registry(__name__, 'METHOD', 'search.method')


def __getattr__(name):
  # METHODS: the registered methods' names, the user's own (registry.register) included.
  if name == 'METHODS':
    return REGISTRY.names()
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

__all__ = ['base', 'METHODS', 'get_method', 'knobs', 'make_config', 'run_batched']


def get_method(name: str) -> base.Method:
  """The declaration of method `name` (its module is `.module`)."""
  return REGISTRY.get(name)


def knobs() -> dict:
  """Every method's knobs with their defaults (the `search` config section beyond the common
  fields); a knob shared by two methods must have one default."""
  return dict(REGISTRY.merged('knobs'))


def make_config(search_cfg, temperature: float, num_steps: int):
  """The method's validated, budget-sized static config."""
  spec = get_method(search_cfg.method)
  return spec.module.Config.from_config(search_cfg, temperature, num_steps, spec)


def run_batched(method: str, keys, sampler, reward, config, conds):
  """Independent prompts/conditions, vmapped: keys [B], conds [B, ...] -> batched results.
  The arguments after `method` are in `run`'s order, with keys and conds batched. A method
  declared with sequential_searches (DTS) runs them one after another with lax.map instead:
  under vmap its tree loops would copy the whole tree at every step (search/base.py: Method).

  Under a mesh with a `searches` axis (experiments/mesh.py) the B searches are split over it
  with jax.shard_map, each device group vmapping (or mapping) its own B / size searches (whose
  particles its `particles` axis splits as usual); B must divide over the axis."""
  spec = get_method(method)
  fn = spec.run
  if spec.sequential_searches:
    batched = lambda k, s, r, c: jax.lax.map(lambda kc: fn(kc[0], s, r, config, kc[1]), (k, c))
  else:
    batched = lambda k, s, r, c: jax.vmap(lambda k1, c1: fn(k1, s, r, config, c1))(k, c)
  if sharding.searches_axis_size() == 1:
    return batched(keys, sampler, reward, conds)
  rows, whole = P(sharding.SEARCHES), P()
  return jax.shard_map(batched, in_specs=(rows, whole, whole, rows), out_specs=rows,
                       axis_names={sharding.SEARCHES}, check_vma=False)(
                           keys, sampler, reward, conds)

"""Inference-time search methods, chosen by `search.method`, discovered from this package.

Every module here that declares `METHOD = base.Method(...)` (or a tuple `METHODS` of named
ones) is a method; its name is the module's. Adding a method is adding its file: its knobs and
defaults, its particle count for the mesh and its default output are all in its declaration
(search/base.py: Method), and the configs, the mesh check, compare, sweeps and the CLI's
variant tokens read them from here.

Every method: `Config.from_config(search_cfg, temperature, num_steps, method)` validates on
the host (before any compilation) and sizes the method to the NFE budget; `run(key, sampler,
reward, config, cond)` is a pure function, jitted with `config` static, returning
`base.SearchResult`.
"""

import dataclasses
import importlib
import pkgutil

import jax

from search import base

_HELPERS = ('base',)  # modules of this package that are not methods


def _discover() -> dict:
  found = {}
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if info.name in _HELPERS or info.name.startswith('_'):
      continue
    module = importlib.import_module(f'{__name__}.{info.name}')
    declared = getattr(module, 'METHODS', None)
    if declared is None:
      declared = (module.METHOD,) if hasattr(module, 'METHOD') else ()
    for spec in declared:
      spec = dataclasses.replace(spec, name=spec.name or info.name, module=module)
      if spec.name in found:
        raise ImportError(f'search method {spec.name!r} is declared by both '
                          f'{found[spec.name].module.__name__} and {module.__name__}.')
      found[spec.name] = spec
  return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


_REGISTRY = _discover()
METHODS = tuple(_REGISTRY)
__all__ = ['base', 'METHODS', 'get_method', 'knobs', 'make_config', 'run_batched']


def get_method(name: str) -> base.Method:
  """The declaration of method `name` (its module is `.module`)."""
  if name not in _REGISTRY:
    raise ValueError(f'Unknown search.method {name!r}; valid: {", ".join(METHODS)}.')
  return _REGISTRY[name]


def knobs() -> dict:
  """Every method's knobs with their defaults (the `search` config section beyond the common
  fields); a knob shared by two methods must have one default."""
  merged, owner = {}, {}
  for spec in _REGISTRY.values():
    for field, default in spec.knobs.items():
      if field in merged and merged[field] != default:
        raise ImportError(f'search knob {field!r} has default {merged[field]!r} in '
                          f'{owner[field]} and {default!r} in {spec.name}.')
      merged[field], owner[field] = default, spec.name
  return merged


def make_config(search_cfg, temperature: float, num_steps: int):
  """The method's validated, budget-sized static config."""
  spec = get_method(search_cfg.method)
  return spec.module.Config.from_config(search_cfg, temperature, num_steps, spec)


def run_batched(method: str, keys, sampler, reward, config, conds):
  """Independent prompts/conditions, vmapped: keys [B], conds [B, ...] -> batched results.
  The arguments after `method` are in `run`'s order, with keys and conds batched."""
  fn = get_method(method).run
  return jax.vmap(lambda k, c: fn(k, sampler, reward, config, c))(keys, conds)

"""Interpolants x_t = alpha_t * x0 + sigma_t * eps, with t = 1 noise and t = 0 data, chosen by
the `interpolant` field of a model or sampler config section, discovered from this package.

Every module here that declares `INTERPOLANT = base.InterpolantKind(...)` is an interpolant;
its name is the module's (samplers/ground/registry.py, the project's one registration style). The
interface is samplers/interpolants/base.py: Interpolant.
"""

from samplers.ground import registry
from samplers.interpolants import base
from samplers.interpolants.base import Interpolant

REGISTRY = registry.Registry(__name__, 'INTERPOLANT', 'interpolant')


def names() -> tuple:
  return REGISTRY.names()


def get_interpolant(name: str, **kwargs) -> Interpolant:
  """Builds an interpolant by name; kwargs are its declared fields (`discrete` also takes
  `alphas_cumprod`)."""
  return REGISTRY.get(name).build(**kwargs)


def from_config(cfg) -> Interpolant:
  """The interpolant named by cfg.interpolant (a model's native one or a sampler's target),
  with the fields it declares read from cfg (their defaults where cfg lacks them)."""
  kind = REGISTRY.get(cfg.get('interpolant', 'linear'))
  return kind.build(**{field: cfg.get(field, default) for field, default in kind.fields.items()})

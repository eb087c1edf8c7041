"""Builders shared by the search tests: tiny problems on the analytic mixture."""

import jax

import search
from configs import common
from models import gmm
from samplers import sampler as sampler_lib
from tests import helpers


def search_cfg(method, **overrides):
  cfg = common.search_config(method=method)
  cfg.update(overrides)
  return cfg


def make_sampler(interpolant='vp', num_steps=20, sde=True, backbone=None):
  backbone = backbone or gmm.make_backbone(helpers.mixture_params(),
                                           helpers.interpolant('linear'), 'velocity')
  return sampler_lib.make_sampler(backbone, helpers.interpolant(interpolant), num_steps, sde)


def run(method, sampler, reward, temperature=1.0, seeds=None, cond=None, **overrides):
  """Runs `method` jitted; vmapped over `seeds` if given (one compile for all seeds)."""
  cfg = search_cfg(method, **overrides)
  config = search.make_config(cfg, temperature, sampler.num_steps)
  fn = search.get_method(method).run
  if seeds is None:
    return jax.jit(lambda k, s: fn(k, s, reward, config, cond))(jax.random.key(0), sampler)
  keys = jax.vmap(jax.random.key)(jax.numpy.asarray(seeds))
  return jax.jit(jax.vmap(lambda k, s: fn(k, s, reward, config, cond),
                          in_axes=(0, None)))(keys, sampler)



"""A small Linen MLP backbone for 2D data (the DTS paper's: 4 x 128, SiLU, sinusoidal time)."""

import flax.linen as nn
import jax.numpy as jnp

from models.loading import trained
from models.backbone import Backbone
from models.backbone import BackboneKind
from samplers import interpolants as interpolants_lib
from samplers import predictions


def sinusoidal_embedding(t, dim: int, max_period: float = 10_000.0):
  """Transformer-style embedding [B, dim] of scalar times t [B] (scaled by 1000 first)."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (1000.0 * t)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class MLP(nn.Module):
  """x [B, D], t [B] -> prediction [B, D]."""
  out_dim: int
  hidden: int = 128
  depth: int = 4
  embed_dim: int = 64

  @nn.compact
  def __call__(self, x, t, labels=None):
    del labels  # unconditional
    h = jnp.concatenate([x, sinusoidal_embedding(t, self.embed_dim)], axis=-1)
    for _ in range(self.depth):
      h = nn.silu(nn.Dense(self.hidden)(h))
    return nn.Dense(self.out_dim)(h)


def make_module(cfg, data_shape) -> MLP:
  if len(data_shape) != 1:
    raise ValueError(f'the MLP backbone takes vectors; the data has shape {tuple(data_shape)}.')
  for field in ('hidden', 'depth', 'embed_dim'):
    if int(cfg[field]) <= 0:
      raise ValueError(f'model.{field} must be positive, got {cfg[field]}.')
  return MLP(out_dim=int(data_shape[0]), hidden=int(cfg.hidden), depth=int(cfg.depth),
             embed_dim=int(cfg.embed_dim))


def init_params(module: MLP, key, data_shape):
  return module.init(key, jnp.zeros((1,) + tuple(data_shape)), jnp.zeros((1,)))['params']


def make_backbone(module: MLP, params, cfg, data_shape) -> Backbone:
  prediction = predictions.check_prediction(cfg.prediction)

  def apply_fn(p, x, t, cond=None):
    del cond
    return module.apply({'params': p}, x, t)

  return Backbone(params=params, apply_fn=apply_fn, prediction=prediction,
                  interpolant=interpolants_lib.from_config(cfg), data_shape=tuple(data_shape))


BACKBONE = BackboneKind(trained.build, trainable=True, order=1)

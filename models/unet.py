"""A small Linen U-Net for 8x8 digit images, optionally class-conditional with classifier-free
guidance.

Why a U-Net rather than a DiT: at 8x8 with 1,797 training images, convolutions share weights
across positions and train in minutes on 2 CPU cores, where a transformer's attention over 64
tokens would need more data and compute for the same quality. No padding is needed: two
stride-2 levels take 8x8 to 4x4 to 2x2.

Images are [B, 8, 8, 1] in [-1, 1]. Labels are ints in [0, num_classes); the extra index
num_classes is the "no class" token that training drops labels to with probability
`label_dropout`, which is what classifier-free guidance contrasts against.
"""

import flax.linen as nn
import jax.numpy as jnp

from models.loading import trained
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.mlp import sinusoidal_embedding
from samplers import interpolants as interpolants_lib
from samplers import predictions


class ResBlock(nn.Module):
  channels: int

  @nn.compact
  def __call__(self, x, emb):
    h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=8)(x)))
    h = h + nn.Dense(self.channels)(emb)[:, None, None, :]
    h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=8)(h)))
    if x.shape[-1] != self.channels:
      x = nn.Conv(self.channels, (1, 1))(x)
    return x + h


class UNet(nn.Module):
  """x [B, H, W, C], t [B], labels [B] or None -> prediction [B, H, W, C]."""
  channels: tuple = (32, 64, 64)
  embed_dim: int = 128
  num_classes: int = 0  # 0: unconditional

  @nn.compact
  def __call__(self, x, t, labels=None):
    emb = nn.Dense(self.embed_dim)(sinusoidal_embedding(t, self.embed_dim))
    if self.num_classes:
      if labels is None:
        labels = jnp.full(x.shape[:1], self.num_classes)
      emb = emb + nn.Embed(self.num_classes + 1, self.embed_dim)(labels)
    emb = nn.Dense(self.embed_dim)(nn.silu(emb))

    h = nn.Conv(self.channels[0], (3, 3))(x)
    skips = []
    for i, ch in enumerate(self.channels):
      h = ResBlock(ch)(h, emb)
      if i < len(self.channels) - 1:
        skips.append(h)
        h = nn.Conv(ch, (3, 3), strides=(2, 2))(h)
    for ch, skip in zip(reversed(self.channels[:-1]), reversed(skips)):
      b, hh, ww, c = h.shape
      h = jnp.broadcast_to(h[:, :, None, :, None, :], (b, hh, 2, ww, 2, c)).reshape(
          b, 2 * hh, 2 * ww, c)
      h = ResBlock(ch)(jnp.concatenate([h, skip], axis=-1), emb)
    h = nn.silu(nn.GroupNorm(num_groups=8)(h))
    return nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


def make_module(cfg, data_shape) -> UNet:
  if len(data_shape) != 3:
    raise ValueError(f'the U-Net takes [H, W, C] images; the data has shape {data_shape}.')
  if data_shape[0] % 4 or data_shape[1] % 4:
    raise ValueError(f'the U-Net halves the image twice; {data_shape[:2]} is not divisible by 4.')
  return UNet(channels=tuple(cfg.channels), embed_dim=int(cfg.embed_dim),
              num_classes=int(cfg.num_classes))


def init_params(module: UNet, key, data_shape):
  labels = jnp.zeros((1,), jnp.int32) if module.num_classes else None
  return module.init(key, jnp.zeros((1,) + tuple(data_shape)), jnp.zeros((1,)), labels)['params']


def make_backbone(module: UNet, params, cfg, data_shape) -> Backbone:
  """cond: a class label (scalar, or [B]), or a dict whose 'label' is one (other keys belong to
  the reward); guidance weight w gives (1 + w) f(c) - w f(none), both passes in one batch: one
  NFE per particle, as in the papers."""
  prediction = predictions.check_prediction(cfg.prediction)
  w = float(cfg.get('guidance_weight', 0.0))

  def apply_fn(p, x, t, cond=None):
    if isinstance(cond, dict):
      cond = cond.get('label')
    if not module.num_classes or cond is None:
      return module.apply({'params': p}, x, t)
    labels = jnp.broadcast_to(jnp.asarray(cond, jnp.int32), x.shape[:1])
    if w == 0.0:
      return module.apply({'params': p}, x, t, labels)
    null = jnp.full_like(labels, module.num_classes)
    both = module.apply({'params': p}, jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                        jnp.concatenate([labels, null]))
    cond_out, uncond_out = jnp.split(both, 2)
    return (1.0 + w) * cond_out - w * uncond_out

  return Backbone(params=params, apply_fn=apply_fn, prediction=prediction,
                  interpolant=interpolants_lib.from_config(cfg), data_shape=tuple(data_shape))


BACKBONE = BackboneKind(trained.build, trainable=True, evaluation='classifier', order=2)

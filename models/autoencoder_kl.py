"""diffusers' AutoencoderKL in Flax Linen: the encoder and decoder of SD 1.x/2.x (4 latent
channels), SDXL and FLUX (16 channels, no quant convs, a shift factor).

Parameter names follow diffusers' PyTorch keys one to one (`decoder.up_blocks.0.resnets.1.
conv1.weight` -> decoder/up_blocks_0/resnets_1/conv1/kernel); older exports that call the
mid-block attention's projections query/key/value/proj_attn are renamed on load, as diffusers
does. Images are NHWC in [-1, 1]; latents NHWC, unnormalised (the pipelines' z / scaling_factor
+ shift_factor is the caller's).
"""

import dataclasses
import functools
import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from models.loading import hub
from models.loading import torch_weights

# The VAE mid-block attention's names in exports older than diffusers 0.14.
LEGACY_ATTENTION = {'query': 'to_q', 'key': 'to_k', 'value': 'to_v', 'proj_attn': 'to_out.0'}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  in_channels: int = 3
  out_channels: int = 3
  down_block_types: Sequence[str] = ('DownEncoderBlock2D',)
  up_block_types: Sequence[str] = ('UpDecoderBlock2D',)
  block_out_channels: Sequence[int] = (64,)
  layers_per_block: int = 1
  act_fn: str = 'silu'
  latent_channels: int = 4
  norm_num_groups: int = 32
  sample_size: int = 32
  scaling_factor: float = 0.18215
  shift_factor: float = 0.0
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True

  @classmethod
  def from_dict(cls, raw: dict, what: str = 'VAE') -> 'VAEConfig':
    names = {f.name for f in dataclasses.fields(cls)}
    config = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()
                    if k in names and v is not None})
    if raw.get('_class_name', 'AutoencoderKL') != 'AutoencoderKL':
      raise ValueError(f'the {what} is a {raw["_class_name"]}, not an AutoencoderKL.')
    for field, kinds, want in (('down_block_types', config.down_block_types,
                                'DownEncoderBlock2D'),
                               ('up_block_types', config.up_block_types, 'UpDecoderBlock2D')):
      if any(k != want for k in kinds) or len(kinds) != len(config.block_out_channels):
        raise ValueError(f'the {what} config has {field} = {list(kinds)}; supported: '
                         f'{want} once per entry of block_out_channels.')
    bad = [c for c in config.block_out_channels if c % config.norm_num_groups]
    if bad:
      raise ValueError(f'the {what} config has block_out_channels {list(bad)} that '
                       f'norm_num_groups = {config.norm_num_groups} does not divide.')
    layers.activation(config.act_fn, what)
    return config

  @property
  def factor(self) -> int:
    """Pixels per latent along each side."""
    return 2 ** (len(self.block_out_channels) - 1)


class ResnetBlock(nn.Module):
  """diffusers' ResnetBlock2D: norm1, act, conv1, (+ time_emb_proj(act(temb))), norm2, act,
  conv2, plus the input (through conv_shortcut, 1x1, where the width changes)."""
  features: int
  groups: int = 32
  eps: float = 1e-6
  act: str = 'silu'
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    act = layers.activation(self.act, 'ResnetBlock2D')
    norm = lambda name: layers.GroupNorm(self.groups, self.eps, self.param_dtype, name=name)
    h = layers.conv(self.features, name='conv1', **kw)(act(norm('norm1')(x)))
    if temb is not None:
      h = h + nn.Dense(self.features, name='time_emb_proj', **kw)(act(temb))[:, None, None]
    h = layers.conv(self.features, name='conv2', **kw)(act(norm('norm2')(h)))
    if x.shape[-1] != self.features:
      x = layers.conv(self.features, 1, name='conv_shortcut', **kw)(x)
    return x + h


class MidAttention(nn.Module):
  """diffusers' Attention as the VAE's mid block uses it: group norm, one head over every
  pixel, residual."""
  groups: int = 32
  eps: float = 1e-6
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    tokens = layers.GroupNorm(self.groups, self.eps, self.param_dtype,
                              name='group_norm')(x).reshape(b, h * w, c)
    q, k, v = (nn.Dense(c, name=n, **kw)(tokens)[:, :, None] for n in ('to_q', 'to_k', 'to_v'))
    out = nn.Dense(c, name='to_out_0', **kw)(layers.attention(q, k, v))
    return x + out.reshape(b, h, w, c)


class MidBlock(nn.Module):
  """resnets_0, (attentions_0,) resnets_1."""
  groups: int
  act: str
  attention: bool = True
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c, kw = x.shape[-1], dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = ResnetBlock(c, self.groups, act=self.act, name='resnets_0', **kw)(x)
    if self.attention:
      x = MidAttention(self.groups, name='attentions_0', **kw)(x)
    return ResnetBlock(c, self.groups, act=self.act, name='resnets_1', **kw)(x)


class _Sampler(nn.Module):
  """downsamplers_0 / upsamplers_0: holds `conv` (diffusers' Downsample2D, Upsample2D)."""
  features: int
  down: bool
  padding: int = 1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if not self.down:   # nearest-neighbour x2, then a 3x3 conv
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      return layers.conv(self.features, name='conv', **kw)(x)
    if self.padding == 0:   # the VAE encoder pads right and bottom only
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    return layers.conv(self.features, stride=2, padding=self.padding, name='conv', **kw)(x)


def downsampler(features, padding=1, **kw):
  return _Sampler(features, True, padding, name='downsamplers_0', **kw)


def upsampler(features, **kw):
  return _Sampler(features, False, name='upsamplers_0', **kw)


class _Block(nn.Module):
  """DownEncoderBlock2D / UpDecoderBlock2D: `n` resnets, then a down or up sampler."""
  features: int
  n: int
  groups: int
  act: str
  sample: str   # 'down', 'up' or ''
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for i in range(self.n):
      x = ResnetBlock(self.features, self.groups, act=self.act, name=f'resnets_{i}', **kw)(x)
    if self.sample == 'down':
      x = downsampler(self.features, padding=0, **kw)(x)
    elif self.sample == 'up':
      x = upsampler(self.features, **kw)(x)
    return x


class Encoder(nn.Module):
  config: VAEConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.conv(c.block_out_channels[0], name='conv_in', **kw)(x)
    last = len(c.block_out_channels) - 1
    for i, features in enumerate(c.block_out_channels):
      x = _Block(features, c.layers_per_block, c.norm_num_groups, c.act_fn,
                 'down' if i < last else '', name=f'down_blocks_{i}', **kw)(x)
    x = MidBlock(c.norm_num_groups, c.act_fn, c.mid_block_add_attention, name='mid_block',
                 **kw)(x)
    x = layers.GroupNorm(c.norm_num_groups, 1e-6, self.param_dtype, name='conv_norm_out')(x)
    x = layers.activation(c.act_fn, 'VAE')(x)
    return layers.conv(2 * c.latent_channels, name='conv_out', **kw)(x)


class Decoder(nn.Module):
  config: VAEConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.conv(c.block_out_channels[-1], name='conv_in', **kw)(z)
    x = MidBlock(c.norm_num_groups, c.act_fn, c.mid_block_add_attention, name='mid_block',
                 **kw)(x)
    widths = tuple(reversed(c.block_out_channels))
    for i, features in enumerate(widths):
      x = _Block(features, c.layers_per_block + 1, c.norm_num_groups, c.act_fn,
                 'up' if i < len(widths) - 1 else '', name=f'up_blocks_{i}', **kw)(x)
    x = layers.GroupNorm(c.norm_num_groups, 1e-6, self.param_dtype, name='conv_norm_out')(x)
    x = layers.activation(c.act_fn, 'VAE')(x)
    return layers.conv(c.out_channels, name='conv_out', **kw)(x)


class AutoencoderKL(nn.Module):
  """encode: images [B, H, W, 3] -> (mean, logvar) [B, H/f, W/f, C] of the latent posterior;
  decode: latents [B, h, w, C] -> images [B, h f, w f, 3]. `parts` limits the tree to 'encoder'
  (encoder, quant_conv), 'decoder' (post_quant_conv, decoder) or both."""
  config: VAEConfig
  parts: tuple = ('encoder', 'decoder')
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if 'encoder' in self.parts:
      self.encoder = Encoder(c, **kw)
      if c.use_quant_conv:
        self.quant_conv = layers.conv(2 * c.latent_channels, 1, **kw)
    if 'decoder' in self.parts:
      self.decoder = Decoder(c, **kw)
      if c.use_post_quant_conv:
        self.post_quant_conv = layers.conv(c.latent_channels, 1, **kw)

  def encode(self, images):
    moments = self.encoder(images)
    if self.config.use_quant_conv:
      moments = self.quant_conv(moments)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def decode(self, z):
    if self.config.use_post_quant_conv:
      z = self.post_quant_conv(z)
    return self.decoder(z)

  def __call__(self, images=None, z=None):
    out = {}
    if 'encoder' in self.parts:
      out['mean'], out['logvar'] = self.encode(images)
    if 'decoder' in self.parts:
      out['images'] = self.decode(z)
    return out


def shapes(config: VAEConfig, parts=('encoder', 'decoder'), dtype=jnp.float32):
  f = config.factor
  images = jnp.zeros((1, f, f, config.in_channels))
  z = jnp.zeros((1, 1, 1, config.latent_channels))
  return jax.eval_shape(AutoencoderKL(config, tuple(parts), param_dtype=dtype).init,
                        jax.random.key(0), images, z)['params']


def legacy_names(tensors: dict) -> dict:
  """Exports older than diffusers 0.14 call the mid-block attention's projections query, key,
  value and proj_attn; they are to_q, to_k, to_v and to_out.0."""
  out = {}
  for key, value in tensors.items():
    parts = key.split('.')
    if '.attentions.' in key and len(parts) >= 2 and parts[-2] in LEGACY_ATTENTION:
      key = '.'.join(parts[:-2] + [LEGACY_ATTENTION[parts[-2]], parts[-1]])
      if value.ndim == 4:   # some saved them as 1x1 convs
        value = value[:, :, 0, 0]
    out[key] = value
  return out


def read_config(folder: str, what: str) -> VAEConfig:
  return VAEConfig.from_dict(hub.read_json(os.path.join(folder, 'config.json'), what), what)


@functools.lru_cache(maxsize=4)
def load(folder: str, what: str = 'VAE', dtype_name: str = 'float32',
         parts: tuple = ('encoder', 'decoder'), variant: str = ''):
  """(AutoencoderKL module, params, config) of a diffusers vae/ folder (PyTorch safetensors),
  with only `parts` read into memory; the other part's tensors must still be the model's."""
  config = read_config(folder, what)
  dtype = jnp.dtype(dtype_name)
  tensors = legacy_names(torch_weights.read_tensors(folder, what, variant))
  full = shapes(config, dtype=dtype)
  params = torch_weights.assign(full, tensors, what, dtype)   # strict over the whole model
  keep = {'encoder', 'quant_conv'} if parts == ('encoder',) else (
      {'decoder', 'post_quant_conv'} if parts == ('decoder',) else set(params))
  params = {k: v for k, v in params.items() if k in keep}
  module = AutoencoderKL(config, tuple(parts), dtype=dtype, param_dtype=dtype)
  return module, jax.tree.map(jnp.asarray, params), config

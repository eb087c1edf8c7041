"""diffusers' UNet2DConditionModel in Flax Linen: SD 1.x (conv projections, 8 heads), SD 2.x
(linear projections, heads per block) and SDXL (a transformer depth per block, no attention in
the first block, and the text_time added embedding of pooled text and size/crop ids).

Parameter names follow diffusers' PyTorch keys one to one (`down_blocks.1.attentions.0.
transformer_blocks.0.attn1.to_q.weight` -> down_blocks_1/attentions_0/transformer_blocks_0/
attn1/to_q/kernel). diffusers' naming quirk is kept: `attention_head_dim` is the number of
heads unless `num_attention_heads` is given. Shapes: sample [B, h, w, C] NHWC, timesteps [B]
(the model's own 0..999 scale), text [B, L, cross_attention_dim], for SDXL added
{'text_embeds': [B, P], 'time_ids': [B, 6]}; out [B, h, w, out_channels].
"""

import dataclasses
import os
from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import autoencoder_kl as ak
from models import layers
from models.loading import hub

DOWN = ('CrossAttnDownBlock2D', 'DownBlock2D')
UP = ('CrossAttnUpBlock2D', 'UpBlock2D')
MID = ('UNetMidBlock2DCrossAttn',)
# Fields that must keep the value shown (features of UNet2DConditionModel this port lacks).
_FIXED = dict(center_input_sample=False, only_cross_attention=False, dual_cross_attention=False,
              class_embed_type=None, encoder_hid_dim=None, encoder_hid_dim_type=None,
              resnet_time_scale_shift='default', time_embedding_type='positional',
              timestep_post_act=None, time_cond_proj_dim=None, conv_in_kernel=3,
              conv_out_kernel=3, attention_type='default', num_class_embeds=None,
              class_embeddings_concat=False, mid_block_only_cross_attention=None,
              cross_attention_norm=None, resnet_skip_time_act=False, resnet_out_scale_factor=1.0,
              time_embedding_act_fn=None, time_embedding_dim=None, downsample_padding=1,
              mid_block_scale_factor=1, reverse_transformer_layers_per_block=None,
              act_fn='silu', addition_embed_type_num_heads=64)


def _per_block(value, n: int, field: str, what: str) -> tuple:
  values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
  if len(values) != n:
    raise ValueError(f'the {what} config has {field} = {list(values)}, not one per block ({n}).')
  return values


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  sample_size: int = 64
  in_channels: int = 4
  out_channels: int = 4
  flip_sin_to_cos: bool = True
  freq_shift: int = 0
  down_block_types: Sequence[str] = ('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',)
  mid_block_type: Optional[str] = 'UNetMidBlock2DCrossAttn'
  up_block_types: Sequence[str] = ('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3
  block_out_channels: Sequence[int] = (320, 640, 1280, 1280)
  layers_per_block: Union[int, Sequence[int]] = 2
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  cross_attention_dim: int = 1280
  transformer_layers_per_block: Union[int, Sequence[int]] = 1
  attention_head_dim: Union[int, Sequence[int]] = 8
  num_attention_heads: Optional[Union[int, Sequence[int]]] = None
  use_linear_projection: bool = False
  upcast_attention: bool = False
  addition_embed_type: Optional[str] = None
  addition_time_embed_dim: Optional[int] = None
  projection_class_embeddings_input_dim: Optional[int] = None

  @classmethod
  def from_dict(cls, raw: dict, what: str = 'U-Net') -> 'UNetConfig':
    if raw.get('_class_name', 'UNet2DConditionModel') != 'UNet2DConditionModel':
      raise ValueError(f'the {what} is a {raw["_class_name"]}, not a UNet2DConditionModel.')
    for field, ok in _FIXED.items():
      if field in raw and raw[field] != ok and not (ok is None and raw[field] in ({}, [])):
        raise ValueError(f'the {what} config has {field} = {raw[field]!r}, which this port of '
                         f'UNet2DConditionModel does not support (supported: {ok!r}).')
    names = {f.name for f in dataclasses.fields(cls)}
    config = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()
                    if k in names})
    config.check(what)
    return config

  def check(self, what: str) -> None:
    n = len(self.block_out_channels)
    if len(self.down_block_types) != n or len(self.up_block_types) != n:
      raise ValueError(f'the {what} config has {len(self.down_block_types)} down and '
                       f'{len(self.up_block_types)} up blocks for {n} block_out_channels.')
    for field, kinds, allowed in (('down_block_types', self.down_block_types, DOWN),
                                  ('up_block_types', self.up_block_types, UP),
                                  ('mid_block_type', (self.mid_block_type,), MID)):
      bad = [k for k in kinds if k not in allowed]
      if bad:
        raise ValueError(f'the {what} config has {field} {bad[0]!r}; supported: '
                         f'{", ".join(allowed)}.')
    if self.addition_embed_type not in (None, 'text_time'):
      raise ValueError(f'the {what} config has addition_embed_type = '
                       f'{self.addition_embed_type!r}; supported: none, text_time (SDXL).')
    if self.addition_embed_type and not (self.addition_time_embed_dim and
                                         self.projection_class_embeddings_input_dim):
      raise ValueError(f'the {what} config has addition_embed_type text_time without '
                       'addition_time_embed_dim and projection_class_embeddings_input_dim.')
    for field in ('layers_per_block', 'transformer_layers_per_block', 'attention_head_dim'):
      _per_block(getattr(self, field), n, field, what)
    for width, heads in zip(self.block_out_channels, self.heads):
      if width % heads:
        raise ValueError(f'the {what} config splits {width} channels into {heads} heads.')

  @property
  def heads(self) -> tuple:
    n = len(self.block_out_channels)
    return _per_block(self.num_attention_heads or self.attention_head_dim, n, 'heads', 'U-Net')

  @property
  def depth(self) -> tuple:
    return _per_block(self.layers_per_block, len(self.block_out_channels), 'layers', 'U-Net')

  @property
  def transformer_depth(self) -> tuple:
    return _per_block(self.transformer_layers_per_block, len(self.block_out_channels),
                      'transformer_layers_per_block', 'U-Net')


class CrossAttention(nn.Module):
  """diffusers' Attention (attn1: self, attn2: cross): to_q, to_k, to_v without bias, to_out.0
  with one."""
  heads: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = x.shape[-1]
    context = x if context is None else context
    q = nn.Dense(d, use_bias=False, name='to_q', **kw)(x)
    k = nn.Dense(d, use_bias=False, name='to_k', **kw)(context)
    v = nn.Dense(d, use_bias=False, name='to_v', **kw)(context)
    out = layers.attention(*(layers.heads(a, self.heads) for a in (q, k, v)))
    return nn.Dense(d, name='to_out_0', **kw)(out)


class GEGLU(nn.Module):
  """ff.net.0.proj: dim -> 2 x inner, the second half's exact GELU gating the first."""
  inner: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(2 * self.inner, name='proj', dtype=self.dtype, param_dtype=self.param_dtype)(x)
    value, gate = jnp.split(h, 2, axis=-1)
    return value * nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = GEGLU(4 * x.shape[-1], name='net_0', **kw)(x)
    return nn.Dense(x.shape[-1], name='net_2', **kw)(h)


class TransformerBlock(nn.Module):
  """diffusers' BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward,
  each after a LayerNorm and added back."""
  heads: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = lambda name: layers.LayerNorm(1e-5, self.param_dtype, name=name)
    x = x + CrossAttention(self.heads, name='attn1', **kw)(norm('norm1')(x))
    x = x + CrossAttention(self.heads, name='attn2', **kw)(norm('norm2')(x), context)
    return x + FeedForward(name='ff', **kw)(norm('norm3')(x))


class Transformer2D(nn.Module):
  """diffusers' Transformer2DModel on continuous input: group norm, proj_in (1x1 conv, or a
  linear layer after flattening), transformer_blocks, proj_out, plus the input."""
  heads: int
  depth: int
  linear: bool
  groups: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, h, w, c = x.shape
    y = layers.GroupNorm(self.groups, 1e-6, self.param_dtype, name='norm')(x)
    proj = (lambda name: nn.Dense(c, name=name, **kw)) if self.linear else (
        lambda name: layers.conv(c, 1, name=name, **kw))
    if self.linear:
      y = proj('proj_in')(y.reshape(b, h * w, c))
    else:
      y = proj('proj_in')(y).reshape(b, h * w, c)
    for i in range(self.depth):
      y = TransformerBlock(self.heads, name=f'transformer_blocks_{i}', **kw)(y, context)
    if self.linear:
      y = proj('proj_out')(y).reshape(b, h, w, c)
    else:
      y = proj('proj_out')(y.reshape(b, h, w, c))
    return x + y


class Block(nn.Module):
  """A down, mid or up block: resnets (for an up block each after concatenating a skip), each
  followed by a Transformer2D where the block has attention, then the block's sampler."""
  features: int
  n: int
  attention: bool
  heads: int
  depth: int
  config: 'UNetConfig'
  sample: str = ''       # 'down', 'up' or ''
  mid: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb, context, skips=None):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    resnet = lambda i: ak.ResnetBlock(self.features, c.norm_num_groups, c.norm_eps,
                                      name=f'resnets_{i}', **kw)
    attn = lambda i: Transformer2D(self.heads, self.depth, c.use_linear_projection,
                                   c.norm_num_groups, name=f'attentions_{i}', **kw)
    outputs = []
    if self.mid:
      x = resnet(0)(x, temb)
      return resnet(1)(attn(0)(x, context), temb), ()
    for i in range(self.n):
      if skips is not None:
        x = jnp.concatenate([x, skips[-1 - i]], axis=-1)
      x = resnet(i)(x, temb)
      if self.attention:
        x = attn(i)(x, context)
      outputs.append(x)
    if self.sample == 'down':
      x = ak.downsampler(self.features, **kw)(x)
      outputs.append(x)
    elif self.sample == 'up':
      x = ak.upsampler(self.features, **kw)(x)
    return x, tuple(outputs)


class UNet2DCondition(nn.Module):
  config: UNetConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, sample, timesteps, text, added=None):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    widths, heads = c.block_out_channels, c.heads
    depth, tdepth, n = c.depth, c.transformer_depth, len(widths)
    timesteps = jnp.broadcast_to(jnp.asarray(timesteps), sample.shape[:1])
    features = layers.timestep_embedding(timesteps, widths[0], c.flip_sin_to_cos, c.freq_shift)
    temb = layers.Projection(4 * widths[0], name='time_embedding', **kw)(features.astype(self.dtype))
    if c.addition_embed_type == 'text_time':
      if added is None:
        raise ValueError('this U-Net (SDXL) needs added conditions: text_embeds and time_ids.')
      ids = added['time_ids']
      time = layers.timestep_embedding(ids.reshape(-1), c.addition_time_embed_dim,
                                       c.flip_sin_to_cos, c.freq_shift)
      time = time.reshape(ids.shape[0], -1)
      both = jnp.concatenate([added['text_embeds'].astype(jnp.float32), time], -1)
      temb = temb + layers.Projection(4 * widths[0], name='add_embedding',
                                      **kw)(both.astype(self.dtype))
    text = text.astype(self.dtype)
    x = layers.conv(widths[0], name='conv_in', **kw)(sample.astype(self.dtype))
    skips = [x]
    for i, kind in enumerate(c.down_block_types):
      x, out = Block(widths[i], depth[i], kind.startswith('CrossAttn'), heads[i], tdepth[i], c,
                     'down' if i < n - 1 else '', name=f'down_blocks_{i}', **kw)(x, temb, text)
      skips.extend(out)
    x, _ = Block(widths[-1], 1, True, heads[-1], tdepth[-1], c, mid=True, name='mid_block',
                 **kw)(x, temb, text)
    up_heads, up_depth, up_tdepth = heads[::-1], depth[::-1], tdepth[::-1]
    for i, kind in enumerate(c.up_block_types):
      count = up_depth[i] + 1
      mine, skips = skips[-count:], skips[:-count]
      x, _ = Block(widths[::-1][i], count, kind.startswith('CrossAttn'), up_heads[i],
                   up_tdepth[i], c, 'up' if i < n - 1 else '', name=f'up_blocks_{i}',
                   **kw)(x, temb, text, mine)
    x = layers.GroupNorm(c.norm_num_groups, c.norm_eps, self.param_dtype,
                         name='conv_norm_out')(x)
    return layers.conv(c.out_channels, name='conv_out', **kw)(jax.nn.silu(x))


def shapes(config: UNetConfig, dtype=jnp.float32, text_dim: int = 0, pooled_dim: int = 0):
  """The abstract parameter tree (jax.eval_shape; nothing allocated)."""
  size = 2 ** (len(config.block_out_channels) - 1)
  added = None
  if config.addition_embed_type:
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    added = {'text_embeds': jnp.zeros((1, pooled)), 'time_ids': jnp.zeros((1, 6))}
  args = (jnp.zeros((1, size, size, config.in_channels)), jnp.zeros((1,)),
          jnp.zeros((1, 1, config.cross_attention_dim)), added)
  return jax.eval_shape(UNet2DCondition(config, param_dtype=dtype).init, jax.random.key(0),
                        *args)['params']


def read_config(folder: str, what: str) -> UNetConfig:
  return UNetConfig.from_dict(hub.read_json(os.path.join(folder, 'config.json'), what), what)

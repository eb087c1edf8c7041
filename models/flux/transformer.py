"""FLUX.1's transformer in Flax Linen: double-stream and single-stream blocks, 3-axis rotary
embeddings, adaptive-norm modulation, timestep (and FLUX.1-dev's guidance) embeddings.

Module and parameter names follow diffusers' `FluxTransformer2DModel` key for key (`.` -> `/`,
`blocks.3` -> `blocks_3`, `weight` -> `kernel` or `scale`), so that a diffusers checkpoint maps
onto the tree by renaming alone (models/loading/torch_weights.py).

Shapes: image tokens `img` [B, S, in_channels] (latents packed 2x2, `pack`), text tokens `txt`
[B, L, joint_attention_dim] (T5 states), pooled text [B, pooled_projection_dim] (CLIP),
timesteps [B] in [0, 1] (the flow's sigma: 1 noise, 0 data), guidance [B] (dev only). The
output is the velocity d x / d sigma = eps - x0 of the packed tokens [B, S, out_channels].
Norms and the softmax run in float32 whatever the parameter dtype.
"""

import dataclasses
import functools
import math
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import diffusers_folder
from models.layers import attention  # pylint: disable=unused-import
from models.layers import layer_norm
from models.layers import Projection
from models.layers import QUERY_CHUNK  # pylint: disable=unused-import
from models.layers import RMSNorm
from models.loading import torch_weights

ROPE_THETA = 10000.0
TIME_CHANNELS = 256


class TransformerConfig:
  """What FLUX's and SD3's transformer configs share (mixed into their dataclasses)."""

  @property
  def inner_dim(self) -> int:
    return self.num_attention_heads * self.attention_head_dim

  @property
  def output_channels(self) -> int:
    return self.out_channels or self.in_channels

  @classmethod
  def from_folder(cls, path: str):
    """Reads transformer/config.json (unknown keys, such as diffusers' bookkeeping, ignored)
    and checks what the port supports."""
    config = diffusers_folder.config_from_json(cls, path)
    config.check()
    return config


@dataclasses.dataclass(frozen=True)
class FluxConfig(TransformerConfig):
  """The fields of transformer/config.json that define the architecture."""
  in_channels: int = 64
  out_channels: Optional[int] = None
  num_layers: int = 19
  num_single_layers: int = 38
  attention_head_dim: int = 128
  num_attention_heads: int = 24
  joint_attention_dim: int = 4096
  pooled_projection_dim: int = 768
  guidance_embeds: bool = False
  axes_dims_rope: Sequence[int] = (16, 56, 56)
  patch_size: int = 1

  def check(self) -> None:
    if self.patch_size != 1:
      raise ValueError(f'FLUX transformer patch_size={self.patch_size}: only 1 is supported '
                       '(the latents are packed 2x2 before the transformer).')
    if sum(self.axes_dims_rope) != self.attention_head_dim:
      raise ValueError(f'FLUX axes_dims_rope {tuple(self.axes_dims_rope)} sum to '
                       f'{sum(self.axes_dims_rope)}, not attention_head_dim='
                       f'{self.attention_head_dim}.')
    if self.in_channels % 4:
      raise ValueError(f'FLUX in_channels={self.in_channels} is not 4 x latent channels.')


# ----------------------------------------------------------------------------- packing


def pack(latents):
  """[B, h, w, C] NHWC latents -> [B, h/2 * w/2, 4C] tokens, channel order (C, dy, dx) as in
  diffusers' FluxPipeline._pack_latents."""
  b, h, w, c = latents.shape
  x = latents.reshape(b, h // 2, 2, w // 2, 2, c)
  x = jnp.transpose(x, (0, 1, 3, 5, 2, 4))
  return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, h: int, w: int):
  """The inverse of `pack`: [B, h/2 * w/2, 4C] -> [B, h, w, C]."""
  b, _, c4 = tokens.shape
  c = c4 // 4
  x = tokens.reshape(b, h // 2, w // 2, c, 2, 2)
  x = jnp.transpose(x, (0, 1, 4, 2, 5, 3))
  return x.reshape(b, h, w, c)


def image_ids(h: int, w: int) -> np.ndarray:
  """Position ids [h/2 * w/2, 3] of the packed tokens: (0, row, column)."""
  ids = np.zeros((h // 2, w // 2, 3), np.float64)
  ids[..., 1] = np.arange(h // 2)[:, None]
  ids[..., 2] = np.arange(w // 2)[None, :]
  return ids.reshape(-1, 3)


def rope_tables(ids: np.ndarray, axes_dims: Sequence[int]):
  """(cos, sin) [S, head_dim] for position ids [S, n_axes]: per axis, angles pos / theta^(2k/d),
  each repeated twice (pairs of adjacent features rotate together). Computed in float64 on
  the host, as diffusers does, then cast to float32."""
  cos, sin = [], []
  for axis, dim in enumerate(axes_dims):
    freqs = 1.0 / ROPE_THETA ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.outer(ids[:, axis].astype(np.float64), freqs)
    cos.append(np.repeat(np.cos(angles), 2, axis=1))
    sin.append(np.repeat(np.sin(angles), 2, axis=1))
  return (np.concatenate(cos, 1).astype(np.float32), np.concatenate(sin, 1).astype(np.float32))


def apply_rope(x, cos, sin):
  """Rotates x [B, S, N, H] by (cos, sin) [S, H]: (x_2k, x_2k+1) -> pairs rotated by angle."""
  pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (-1, 2))
  rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
  out = x.astype(jnp.float32) * cos[None, :, None] + rotated * sin[None, :, None]
  return out.astype(x.dtype)


def timestep_features(t, dim: int = TIME_CHANNELS):
  """Sinusoidal features [B, dim] of t [B] (already x1000): [cos, sin], diffusers' Timesteps
  with flip_sin_to_cos=True and downscale_freq_shift=0."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


# ----------------------------------------------------------------------------- layers


class Modulation(nn.Module):
  """linear(silu(temb)) split into `chunks` vectors [B, dim] (AdaLayerNorm*'s `linear`)."""
  dim: int
  chunks: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, temb):
    out = nn.Dense(self.chunks * self.dim, dtype=self.dtype, param_dtype=self.param_dtype,
                   name='linear')(nn.silu(temb))
    return jnp.split(out[:, None, :], self.chunks, axis=-1)


def modulate(x, shift, scale):
  return layer_norm(x) * (1 + scale) + shift


class FeedForward(nn.Module):
  """dim -> 4 dim (GELU, tanh approximation) -> dim; keys net.0.proj and net.2."""
  dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    hidden = _GeluProjection(4 * self.dim, name='net_0', **kw)(x)
    return nn.Dense(self.dim, name='net_2', **kw)(hidden)


class _GeluProjection(nn.Module):
  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name='proj')
    return nn.gelu(dense(x), approximate=True)


def qkv(x, prefix: str, heads: int, head_dim: int, kw, qk_norm: bool = True):
  """q, k, v [B, T, N, H] of x through the calling module's dense (and, with qk_norm, RMS
  norm) layers: keys to_q, norm_q, ... (prefix '') or add_q_proj, norm_added_q, ... (prefix
  'add'). Shared with SD3's MMDiT (models/sd3/transformer.py)."""
  split = lambda y: y.reshape(y.shape[:2] + (heads, head_dim))
  dense = lambda n: nn.Dense(heads * head_dim, name=f'add_{n}_proj' if prefix else f'to_{n}',
                             **kw)
  norm = lambda n: (RMSNorm(param_dtype=kw['param_dtype'],
                            name=f'norm_added_{n}' if prefix else f'norm_{n}')
                    if qk_norm else (lambda y: y))
  return norm('q')(split(dense('q')(x))), norm('k')(split(dense('k')(x))), split(dense('v')(x))


class DoubleAttention(nn.Module):
  """Joint attention of text and image tokens with separate projections (FluxAttention with
  added_kv_proj_dim): returns (image out, text out)."""
  heads: int
  head_dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, img, txt, cos, sin):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    qi, ki, vi = qkv(img, '', self.heads, self.head_dim, kw)
    qt, kt, vt = qkv(txt, 'add', self.heads, self.head_dim, kw)
    q = apply_rope(jnp.concatenate([qt, qi], 1), cos, sin)
    k = apply_rope(jnp.concatenate([kt, ki], 1), cos, sin)
    out = attention(q, k, jnp.concatenate([vt, vi], 1))
    txt_out, img_out = out[:, :txt.shape[1]], out[:, txt.shape[1]:]
    img_out = nn.Dense(img.shape[-1], name='to_out_0', **kw)(img_out)
    return img_out, nn.Dense(img.shape[-1], name='to_add_out', **kw)(txt_out)


class DoubleBlock(nn.Module):
  """FluxTransformerBlock: text and image streams, each with its own modulation and MLP,
  meeting in one attention."""
  heads: int
  head_dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, img, txt, temb, cos, sin):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dim = img.shape[-1]
    shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = Modulation(dim, 6, name='norm1', **kw)(temb)
    c_shift, c_scale, c_gate, c_shift_mlp, c_scale_mlp, c_gate_mlp = Modulation(dim, 6, name='norm1_context', **kw)(temb)
    img_attn, txt_attn = DoubleAttention(self.heads, self.head_dim, name='attn', **kw)(
        modulate(img, shift, scale), modulate(txt, c_shift, c_scale), cos, sin)
    img = img + gate * img_attn
    img = img + gate_mlp * FeedForward(dim, name='ff', **kw)(
        modulate(img, shift_mlp, scale_mlp))
    txt = txt + c_gate * txt_attn
    txt = txt + c_gate_mlp * FeedForward(dim, name='ff_context', **kw)(
        modulate(txt, c_shift_mlp, c_scale_mlp))
    return img, txt


class SingleBlock(nn.Module):
  """FluxSingleTransformerBlock: one stream over [text, image], attention and MLP in parallel."""
  heads: int
  head_dim: int
  mlp_ratio: float = 4.0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb, cos, sin):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dim = x.shape[-1]
    shift, scale, gate = Modulation(dim, 3, name='norm', **kw)(temb)
    h = modulate(x, shift, scale)
    mlp = nn.gelu(nn.Dense(int(dim * self.mlp_ratio), name='proj_mlp', **kw)(h),
                  approximate=True)
    q, k, v = _SingleQKV(self.heads, self.head_dim, name='attn', **kw)(h)
    attn = attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
    out = nn.Dense(dim, name='proj_out', **kw)(jnp.concatenate([attn, mlp], -1))
    return x + gate * out


class _SingleQKV(nn.Module):
  heads: int
  head_dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return qkv(x, '', self.heads, self.head_dim,
                dict(dtype=self.dtype, param_dtype=self.param_dtype))


class FluxTransformer(nn.Module):
  """FluxTransformer2DModel. __call__(img [B, S, C], txt [B, L, D_t5], pooled [B, D_clip],
  timesteps [B], guidance [B] or None, cos, sin [L + S, head_dim]) -> [B, S, C_out]."""
  config: FluxConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, img, txt, pooled, timesteps, guidance, cos, sin):
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dim = cfg.inner_dim
    embed = TimeTextEmbed(dim, cfg.guidance_embeds, name='time_text_embed', **kw)
    temb = embed(timesteps, guidance, pooled.astype(self.dtype))
    img = nn.Dense(dim, name='x_embedder', **kw)(img.astype(self.dtype))
    txt = nn.Dense(dim, name='context_embedder', **kw)(txt.astype(self.dtype))
    block = dict(heads=cfg.num_attention_heads, head_dim=cfg.attention_head_dim, **kw)
    for i in range(cfg.num_layers):
      img, txt = DoubleBlock(name=f'transformer_blocks_{i}', **block)(img, txt, temb, cos, sin)
    x = jnp.concatenate([txt, img], 1)
    for i in range(cfg.num_single_layers):
      x = SingleBlock(name=f'single_transformer_blocks_{i}', **block)(x, temb, cos, sin)
    img = x[:, txt.shape[1]:]
    scale, shift = Modulation(dim, 2, name='norm_out', **kw)(temb)
    img = layer_norm(img) * (1 + scale) + shift
    return nn.Dense(cfg.output_channels, name='proj_out', **kw)(img)


class TimeTextEmbed(nn.Module):
  """CombinedTimestep(Guidance)TextProjEmbeddings: MLP(sinusoid(1000 t)) [+ MLP(sinusoid(1000
  g))] + MLP(pooled)."""
  dim: int
  guidance_embeds: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, timesteps, guidance, pooled):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    features = lambda t: timestep_features(t.astype(jnp.float32) * 1000.0).astype(self.dtype)
    temb = Projection(self.dim, name='timestep_embedder', **kw)(features(timesteps))
    if self.guidance_embeds:
      temb = temb + Projection(self.dim, name='guidance_embedder', **kw)(features(guidance))
    return temb + Projection(self.dim, name='text_embedder', **kw)(pooled)


# -- weights -------------------------------------------------------------------------------


def shapes(config: FluxConfig, dtype=jnp.float32, text_length: int = 1):
  """The abstract parameter tree of the transformer (jax.eval_shape; nothing allocated)."""
  module = FluxTransformer(config, param_dtype=dtype)
  cos, sin = rope_tables(np.zeros((text_length + 1, 3)), config.axes_dims_rope)
  args = (jnp.zeros((1, 1, config.in_channels)),
          jnp.zeros((1, text_length, config.joint_attention_dim)),
          jnp.zeros((1, config.pooled_projection_dim)), jnp.zeros((1,)), jnp.zeros((1,)),
          cos, sin)
  return jax.eval_shape(module.init, jax.random.key(0), *args)['params']


@functools.lru_cache(maxsize=2)
def load(path: str, dtype_name: str):
  """(FluxConfig, params) of the folder's transformer/ (sharded or not), cast to dtype."""
  sub = os.path.join(path, 'transformer')
  config = FluxConfig.from_folder(sub)
  return config, torch_weights.load(sub, 'FLUX transformer', shapes(config),
                                    diffusers_folder.DTYPES[dtype_name])

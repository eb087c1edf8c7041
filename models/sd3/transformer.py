"""Stable Diffusion 3 / 3.5's MMDiT in Flax Linen: patch embedding with a cropped 2D sin-cos
table, joint-attention blocks over image and text tokens with adaptive-norm modulation, SD3.5's
QK RMS-normalisation (qk_norm) and SD3.5-medium's extra image self-attention
(dual_attention_layers), the timestep and pooled-text embedding.

Module and parameter names follow diffusers' `SD3Transformer2DModel` key for key (`.` -> `/`,
`blocks.3` -> `blocks_3`, `weight` -> `kernel` or `scale`), so that a diffusers checkpoint maps
onto the tree by renaming alone (models/loading/torch_weights.py). The layers it shares with
FLUX's transformer (modulation, feed-forward, q/k/v projections, the time and text embedding)
are FLUX's (models/flux/transformer.py).

Shapes: latents [B, h, w, C] NHWC (h, w multiples of patch_size), text states `txt`
[B, L, joint_attention_dim] (the CLIP states zero-padded to T5's width, then T5's), pooled
text [B, pooled_projection_dim] (both CLIPs' projections), timesteps [B] in [0, 1] (the flow's
sigma: 1 noise, 0 data; the network embeds 1000 sigma as diffusers' pipeline passes it). The
output is the velocity d x / d sigma = eps - x0 [B, h, w, out_channels]. Image tokens come
first in the joint attention, then text (FLUX puts text first). Norms and the softmax run in
float32 whatever the parameter dtype.
"""

import dataclasses
import functools
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import diffusers_folder
from models.flux import transformer as flux_layers
from models.layers import attention
from models.layers import layer_norm
from models.loading import torch_weights

QK_NORMS = (None, 'rms_norm')


@dataclasses.dataclass(frozen=True)
class SD3Config(flux_layers.TransformerConfig):
  """The fields of transformer/config.json that define the architecture (SD3-medium's
  defaults: 24 blocks of 24 heads x 64, no QK norm)."""
  sample_size: int = 128
  patch_size: int = 2
  in_channels: int = 16
  num_layers: int = 18
  attention_head_dim: int = 64
  num_attention_heads: int = 18
  joint_attention_dim: int = 4096
  caption_projection_dim: int = 1152
  pooled_projection_dim: int = 2048
  out_channels: Optional[int] = 16
  pos_embed_max_size: int = 96
  dual_attention_layers: Sequence[int] = ()
  qk_norm: Optional[str] = None

  def check(self) -> None:
    if self.qk_norm not in QK_NORMS:
      raise ValueError(f'SD3 transformer qk_norm={self.qk_norm!r}: supported are '
                       f'{", ".join(map(repr, QK_NORMS))} (SD3.5 uses rms_norm).')
    if self.caption_projection_dim != self.inner_dim:
      raise ValueError(f'SD3 transformer caption_projection_dim={self.caption_projection_dim} '
                       f'differs from num_attention_heads x attention_head_dim = '
                       f'{self.inner_dim}: the text and image streams must be as wide.')
    bad = [i for i in self.dual_attention_layers if not 0 <= i < self.num_layers]
    if bad:
      raise ValueError(f'SD3 transformer dual_attention_layers name block {bad[0]}, but it has '
                       f'{self.num_layers} blocks.')


# ----------------------------------------------------------------------------- patches


def unpatchify(tokens, h: int, w: int, p: int):
  """[B, (h/p)(w/p), p p C] -> [B, h, w, C], diffusers' `nhwpqc -> nchpwq` in NHWC."""
  b, _, pc = tokens.shape
  c = pc // (p * p)
  x = tokens.reshape(b, h // p, w // p, p, p, c)
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return x.reshape(b, h, w, c)


class PatchEmbed(nn.Module):
  """A p x p stride-p convolution to tokens (row-major), plus the centre crop of the
  checkpoint's sin-cos table [1, M^2, D] (M = pos_embed_max_size) at the patch grid's size."""
  config: SD3Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, latents):
    cfg, p = self.config, self.config.patch_size
    size, dim = cfg.pos_embed_max_size, cfg.inner_dim
    b, h, w, _ = latents.shape
    rows, cols = h // p, w // p
    if rows > size or cols > size:
      raise ValueError(f'SD3 latents of {h} x {w} make a {rows} x {cols} patch grid, larger '
                       f'than the transformer\'s positional table ({size} x {size}).')
    x = nn.Conv(dim, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                param_dtype=self.param_dtype, name='proj')(latents.astype(self.dtype))
    x = x.reshape(b, rows * cols, dim)
    table = self.param('pos_embed', nn.initializers.zeros, (1, size * size, dim),
                       self.param_dtype)
    top, left = (size - rows) // 2, (size - cols) // 2
    crop = table.reshape(size, size, dim)[top:top + rows, left:left + cols]
    return (x + crop.reshape(1, rows * cols, dim).astype(self.dtype)).astype(self.dtype)


# ----------------------------------------------------------------------------- blocks


class JointAttention(nn.Module):
  """Attention over [image, text] tokens with separate projections (JointAttnProcessor2_0):
  returns (image out, text out), text out None where the block is context_pre_only. With
  `txt` None it is the image-only self-attention of a dual-attention block (`attn2`)."""
  heads: int
  head_dim: int
  qk_norm: bool
  context_pre_only: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, img, txt=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    args = (self.heads, self.head_dim, kw, self.qk_norm)
    q, k, v = flux_layers.qkv(img, '', *args)
    if txt is not None:
      qt, kt, vt = flux_layers.qkv(txt, 'add', *args)
      q, k, v = (jnp.concatenate(pair, 1) for pair in ((q, qt), (k, kt), (v, vt)))
    out = attention(q, k, v)
    img_out = nn.Dense(img.shape[-1], name='to_out_0', **kw)(out[:, :img.shape[1]])
    if txt is None or self.context_pre_only:
      return img_out, None
    return img_out, nn.Dense(img.shape[-1], name='to_add_out', **kw)(out[:, img.shape[1]:])


class JointBlock(nn.Module):
  """JointTransformerBlock: image and text streams, each modulated by temb, meeting in one
  attention; the image stream's MLP, and the text stream's unless context_pre_only (the
  last block, whose text output nothing reads: it returns None). `dual`: SD3.5's second,
  image-only attention from the same normed input with its own modulation."""
  heads: int
  head_dim: int
  qk_norm: bool
  context_pre_only: bool = False
  dual: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, img, txt, temb):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dim = img.shape[-1]
    mods = flux_layers.Modulation(dim, 9 if self.dual else 6, name='norm1', **kw)(temb)
    shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = mods[:6]
    if self.context_pre_only:   # AdaLayerNormContinuous: (scale, shift), in that order
      c_scale, c_shift = flux_layers.Modulation(dim, 2, name='norm1_context', **kw)(temb)
    else:
      (c_shift, c_scale, c_gate, c_shift_mlp, c_scale_mlp,
       c_gate_mlp) = flux_layers.Modulation(dim, 6, name='norm1_context', **kw)(temb)
    attn = dict(heads=self.heads, head_dim=self.head_dim, qk_norm=self.qk_norm, **kw)
    img_attn, txt_attn = JointAttention(context_pre_only=self.context_pre_only, name='attn',
                                        **attn)(flux_layers.modulate(img, shift, scale),
                                                flux_layers.modulate(txt, c_shift, c_scale))
    if self.dual:   # from the block's input, normed as for `attn`
      shift2, scale2, gate2 = mods[6:]
      img_attn2, _ = JointAttention(name='attn2', **attn)(
          flux_layers.modulate(img, shift2, scale2))
      img = img + gate * img_attn + gate2 * img_attn2
    else:
      img = img + gate * img_attn
    img = img + gate_mlp * flux_layers.FeedForward(dim, name='ff', **kw)(
        flux_layers.modulate(img, shift_mlp, scale_mlp))
    if self.context_pre_only:
      return img, None
    txt = txt + c_gate * txt_attn
    txt = txt + c_gate_mlp * flux_layers.FeedForward(dim, name='ff_context', **kw)(
        flux_layers.modulate(txt, c_shift_mlp, c_scale_mlp))
    return img, txt


class SD3Transformer(nn.Module):
  """SD3Transformer2DModel. __call__(latents [B, h, w, C], txt [B, L, D_joint], pooled
  [B, D_pooled], timesteps [B]) -> velocity [B, h, w, C_out]."""
  config: SD3Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, latents, txt, pooled, timesteps):
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dim = cfg.inner_dim
    _, h, w, _ = latents.shape
    img = PatchEmbed(cfg, name='pos_embed', **kw)(latents)
    embed = flux_layers.TimeTextEmbed(dim, False, name='time_text_embed', **kw)
    temb = embed(timesteps, None, pooled.astype(self.dtype))
    txt = nn.Dense(cfg.caption_projection_dim, name='context_embedder', **kw)(
        txt.astype(self.dtype))
    for i in range(cfg.num_layers):
      img, txt = JointBlock(cfg.num_attention_heads, cfg.attention_head_dim,
                            cfg.qk_norm is not None, context_pre_only=i == cfg.num_layers - 1,
                            dual=i in cfg.dual_attention_layers,
                            name=f'transformer_blocks_{i}', **kw)(img, txt, temb)
    scale, shift = flux_layers.Modulation(dim, 2, name='norm_out', **kw)(temb)
    img = layer_norm(img) * (1 + scale) + shift
    p = cfg.patch_size
    out = nn.Dense(p * p * cfg.output_channels, name='proj_out', **kw)(img)
    return unpatchify(out, h, w, p)


# -- weights -------------------------------------------------------------------------------


def shapes(config: SD3Config, dtype=jnp.float32, text_length: int = 1):
  """The abstract parameter tree of the transformer (jax.eval_shape; nothing allocated)."""
  module = SD3Transformer(config, param_dtype=dtype)
  p = config.patch_size
  args = (jnp.zeros((1, p, p, config.in_channels)),
          jnp.zeros((1, text_length, config.joint_attention_dim)),
          jnp.zeros((1, config.pooled_projection_dim)), jnp.zeros((1,)))
  return jax.eval_shape(module.init, jax.random.key(0), *args)['params']


@functools.lru_cache(maxsize=2)
def load(path: str, dtype_name: str):
  """(SD3Config, params) of the folder's transformer/ (sharded or not), cast to dtype."""
  sub = os.path.join(path, 'transformer')
  config = SD3Config.from_folder(sub)
  return config, torch_weights.load(sub, 'SD3 transformer', shapes(config),
                                    diffusers_folder.DTYPES[dtype_name])

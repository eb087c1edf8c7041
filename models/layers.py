"""Layers that the project's ports of published networks share (FLUX, CLIP, T5, the SD U-Net
and AutoencoderKL), named so that a PyTorch key maps onto them by renaming alone.

Conventions: images are NHWC; attention inputs are [B, T, N, H] (tokens, heads, head width);
norms and softmaxes run in float32 whatever the parameter dtype, and return the input's dtype.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

QUERY_CHUNK = 1024   # attention queries per chunk (see `attention`)


def attention(q, k, v, chunk: int = QUERY_CHUNK, scale=None, bias=None):
  """Softmax attention over [B, T, N, H] (logits scaled by `scale`, 1/sqrt(H) by default, plus
  `bias` [B or 1, N, T, S] if given), softmax in float32 -> [B, T, N * H].

  Queries go in chunks of `chunk` (lax.map) when T is longer: each query's softmax is over all
  keys either way, so the result is the same, but the logits held at once are [B, N, chunk, S]
  rather than [B, N, T, S] (at 1024x1024, FLUX has T = 4352 and one particle's full logits take
  1.7 GiB per layer in float32)."""
  b, t, n, h = q.shape
  scale = 1.0 / math.sqrt(h) if scale is None else scale

  def one(qc, bc):
    logits = jnp.einsum('btnh,bsnh->bnts', qc, k, preferred_element_type=jnp.float32) * scale
    if bc is not None:
      logits = logits + bc.astype(jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum('bnts,bsnh->btnh', weights, v)

  if t <= chunk:
    out = one(q, bias)
  else:
    pad = -t % chunk
    chunks = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b, -1, chunk, n, h)
    if bias is None:
      out = jax.lax.map(lambda qc: one(qc, None), jnp.swapaxes(chunks, 0, 1))
    else:
      bias = jnp.pad(bias, ((0, 0), (0, 0), (0, pad), (0, 0)))
      bias = jnp.moveaxis(bias.reshape(bias.shape[:2] + (-1, chunk) + bias.shape[3:]), 2, 0)
      out = jax.lax.map(lambda a: one(*a), (jnp.swapaxes(chunks, 0, 1), bias))
    out = jnp.swapaxes(out, 0, 1).reshape(b, t + pad, n, h)[:, :t]
  return out.reshape(b, t, n * h)


def heads(x, n: int):
  """[B, T, N * H] -> [B, T, N, H]."""
  return x.reshape(x.shape[:2] + (n, x.shape[-1] // n))


def layer_norm(x, eps: float = 1e-6):
  """LayerNorm without affine parameters, in float32."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis in float32 (keys weight -> scale, bias)."""
  eps: float = 1e-5
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (d,), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (d,), self.param_dtype)
    y = layer_norm(x.astype(jnp.float32), self.eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


class RMSNorm(nn.Module):
  """x / rms(x) * weight, in float32 (T5's layer norm, FLUX's q/k norms)."""
  eps: float = 1e-6
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
    return (x32 * scale.astype(jnp.float32)).astype(x.dtype)


class GroupNorm(nn.Module):
  """torch.nn.GroupNorm over the channels (last axis) of NHWC or [B, T, C], in float32."""
  groups: int = 32
  eps: float = 1e-5
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    if c % self.groups:
      raise ValueError(f'GroupNorm: {c} channels do not split into {self.groups} groups.')
    scale = self.param('scale', nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (c,), self.param_dtype)
    x32 = x.astype(jnp.float32)
    g = x32.reshape(x.shape[0], -1, self.groups, c // self.groups)
    mean = g.mean((1, 3), keepdims=True)
    var = jnp.square(g - mean).mean((1, 3), keepdims=True)
    y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


class Embedding(nn.Module):
  """torch.nn.Embedding: a table `weight` [num, features] looked up by integer ids."""
  num: int
  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, ids):
    table = self.param('weight', nn.initializers.normal(0.02), (self.num, self.features),
                       self.param_dtype)
    return jnp.take(table, ids, axis=0).astype(self.dtype)


class Projection(nn.Module):
  """linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding and PixArtAlphaTextProjection)."""
  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = lambda name: nn.Dense(self.features, dtype=self.dtype,
                                  param_dtype=self.param_dtype, name=name)
    return dense('linear_2')(nn.silu(dense('linear_1')(x)))


def conv(features: int, kernel: int = 3, stride: int = 1, padding: int = None, bias=True,
         name=None, dtype=jnp.float32, param_dtype=jnp.float32):
  """torch.nn.Conv2d(k, stride, padding) on NHWC (padding defaults to k // 2)."""
  pad = kernel // 2 if padding is None else padding
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=bias, name=name, dtype=dtype,
                 param_dtype=param_dtype)


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0,
                       max_period: float = 10000.0):
  """diffusers' get_timestep_embedding: sinusoidal features [B, dim] of t [B], frequencies
  exp(-log(max_period) k / (dim/2 - shift)); [sin, cos] or, flipped, [cos, sin]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - shift))
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  parts = [jnp.cos(args), jnp.sin(args)] if flip_sin_to_cos else [jnp.sin(args), jnp.cos(args)]
  out = jnp.concatenate(parts, axis=-1)
  return jnp.pad(out, ((0, 0), (0, dim % 2)))


ACTIVATIONS = {
    'gelu': lambda x: nn.gelu(x, approximate=False),
    'gelu_new': lambda x: nn.gelu(x, approximate=True),
    'gelu_pytorch_tanh': lambda x: nn.gelu(x, approximate=True),
    'quick_gelu': lambda x: x * jax.nn.sigmoid(1.702 * x),
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
    'swish': jax.nn.silu,
}


def activation(name: str, what: str):
  """The activation function `name` (transformers' ACT2FN names), or one line naming it."""
  if name not in ACTIVATIONS:
    raise ValueError(f'the {what} uses activation {name!r}, which is not supported; valid: '
                     f'{", ".join(sorted(ACTIVATIONS))}.')
  return ACTIVATIONS[name]

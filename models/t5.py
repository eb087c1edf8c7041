"""The T5 encoder (v1.1: gated-GELU feed-forward, RMS layer norms, relative position buckets)
in Flax Linen: FLUX's T5-XXL text encoder.

Parameter names follow transformers' PyTorch T5EncoderModel key for key (`encoder.block.3.
layer.0.SelfAttention.q.weight` -> encoder/block_3/layer_0/SelfAttention/q/kernel), so a
checkpoint maps onto the tree by renaming alone. The embedding is `shared.weight`; a checkpoint
that saved its tied copy `encoder.embed_tokens.weight` (alone or beside it) is read too. ids
[B, L] -> states [B, L, d_model], no attention mask (as FLUX's pipeline calls it).
"""

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from models.loading import hub
from models.loading import torch_weights


@dataclasses.dataclass(frozen=True)
class T5Config:
  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 2048
  num_layers: int = 6
  num_heads: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = 'relu'

  @property
  def gated(self) -> bool:
    return self.feed_forward_proj.startswith('gated-')

  @property
  def act(self) -> str:
    act = self.feed_forward_proj.split('-')[-1]
    return 'gelu_new' if act == 'gelu' else act   # transformers' T5: gated-gelu is gelu_new

  @classmethod
  def from_dict(cls, raw: dict, what: str) -> 'T5Config':
    arch = (raw.get('architectures') or ['T5EncoderModel'])[0]
    if raw.get('model_type', 't5') != 't5' or arch not in ('T5EncoderModel', 'T5Model',
                                                           'T5ForConditionalGeneration'):
      raise ValueError(f'the {what} config is a {raw.get("model_type")!r} {arch!r}, not a T5.')
    names = {f.name for f in dataclasses.fields(cls)}
    config = cls(**{k: v for k, v in raw.items() if k in names})
    parts = config.feed_forward_proj.split('-')
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != 'gated'):
      raise ValueError(f'the {what} config has feed_forward_proj = '
                       f'{config.feed_forward_proj!r}; expected ACT or gated-ACT.')
    layers.activation(config.act, what)
    return config


def relative_position_bucket(relative_position, num_buckets: int, max_distance: int):
  """T5's bidirectional bucket of key - query offsets: exact up to num_buckets / 4 apart, then
  logarithmic up to max_distance, the sign in the upper half."""
  num_buckets //= 2
  buckets = (relative_position > 0) * num_buckets
  distance = jnp.abs(relative_position)
  exact = num_buckets // 2
  far = exact + (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / exact)
                 / jnp.log(max_distance / exact) * (num_buckets - exact)).astype(jnp.int32)
  far = jnp.minimum(far, num_buckets - 1)
  return buckets + jnp.where(distance < exact, distance, far)


class SelfAttention(nn.Module):
  config: T5Config
  has_bias: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, bias):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype, use_bias=False)
    inner = c.num_heads * c.d_kv
    q, k, v = (layers.heads(nn.Dense(inner, name=n, **kw)(x), c.num_heads) for n in 'qkv')
    if self.has_bias:
      t = x.shape[1]
      offsets = jnp.arange(t)[None, :] - jnp.arange(t)[:, None]
      buckets = relative_position_bucket(offsets, c.relative_attention_num_buckets,
                                         c.relative_attention_max_distance)
      table = layers.Embedding(c.relative_attention_num_buckets, c.num_heads,
                               name='relative_attention_bias', dtype=jnp.float32,
                               param_dtype=self.param_dtype)(buckets)     # [T, T, N]
      bias = jnp.transpose(table, (2, 0, 1))[None]
    out = layers.attention(q, k, v, scale=1.0, bias=bias)   # T5 folds the scale into q
    return nn.Dense(c.d_model, name='o', **kw)(out), bias


class FeedForward(nn.Module):
  config: T5Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype, use_bias=False)
    act = layers.activation(c.act, 'T5')
    if c.gated:
      h = act(nn.Dense(c.d_ff, name='wi_0', **kw)(x)) * nn.Dense(c.d_ff, name='wi_1', **kw)(x)
    else:
      h = act(nn.Dense(c.d_ff, name='wi', **kw)(x))
    return nn.Dense(c.d_model, name='wo', **kw)(h)


class _AttentionLayer(nn.Module):
  config: T5Config
  has_bias: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, bias):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.RMSNorm(self.config.layer_norm_epsilon, self.param_dtype, name='layer_norm')(x)
    out, bias = SelfAttention(self.config, self.has_bias, name='SelfAttention', **kw)(h, bias)
    return x + out, bias


class _FeedForwardLayer(nn.Module):
  config: T5Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.RMSNorm(self.config.layer_norm_epsilon, self.param_dtype, name='layer_norm')(x)
    return x + FeedForward(self.config, name='DenseReluDense', **kw)(h)


class Block(nn.Module):
  config: T5Config
  has_bias: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, bias):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x, bias = _AttentionLayer(self.config, self.has_bias, name='layer_0', **kw)(x, bias)
    return _FeedForwardLayer(self.config, name='layer_1', **kw)(x), bias


class Encoder(nn.Module):
  config: T5Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    bias = None   # block 0 owns the position bias; every block adds the same one
    for i in range(self.config.num_layers):
      x, bias = Block(self.config, i == 0, name=f'block_{i}', **kw)(x, bias)
    return layers.RMSNorm(self.config.layer_norm_epsilon, self.param_dtype,
                          name='final_layer_norm')(x)


class T5Encoder(nn.Module):
  """ids [B, L] -> last hidden states [B, L, d_model]."""
  config: T5Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, ids):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.Embedding(self.config.vocab_size, self.config.d_model, name='shared', **kw)(ids)
    return Encoder(self.config, name='encoder', **kw)(x)


def shapes(config: T5Config, dtype=jnp.float32):
  return jax.eval_shape(T5Encoder(config, param_dtype=dtype).init, jax.random.key(0),
                        jnp.zeros((1, 1), jnp.int32))['params']


def tie_embedding(tensors: dict) -> dict:
  """`shared.weight` from a checkpoint that holds it, its tied copy encoder.embed_tokens.weight,
  or both (the copy then dropped)."""
  tensors = dict(tensors)
  copy = tensors.pop('encoder.embed_tokens.weight', None)
  if copy is not None and 'shared.weight' not in tensors:
    tensors['shared.weight'] = copy
  return tensors


def load(folder: str, what: str = 'T5 encoder', dtype_name: str = 'float32'):
  """(T5Encoder module, params) of a transformers T5EncoderModel folder (config.json and
  PyTorch safetensors, sharded or not), computing in dtype."""
  config = T5Config.from_dict(hub.read_json(os.path.join(folder, 'config.json'), what), what)
  dtype = jnp.dtype(dtype_name)
  tensors = tie_embedding(torch_weights.read_tensors(folder, what))
  params = torch_weights.assign(shapes(config, dtype), tensors, what, dtype)
  return T5Encoder(config, dtype=dtype, param_dtype=dtype), jax.tree.map(jnp.asarray, params)

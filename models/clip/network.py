"""CLIP in Flax Linen: the text and vision transformers and their projections.

Module and parameter names follow transformers' PyTorch CLIPModel, CLIPTextModel and
CLIPTextModelWithProjection key for key (`.` -> `/`, `layers.3` -> `layers_3`, `weight` ->
`kernel` or `scale`), so a checkpoint maps onto the tree by renaming alone
(models/loading/torch_weights.py). Text: token ids [B, L] -> states [B, L, D] (causal
self-attention, pre-norm layers); pooled text is the final-normed state at the first end token
(at the largest id for OpenCLIP, or when the config says eos_token_id = 2, as transformers
does). Vision: pixel
values [B, 3, H, W] as CLIP's image processor makes them -> pooled [B, D] (post-normed class
token).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import layers
from models.clip.config import ClipConfig
from models.clip.config import TextConfig
from models.clip.config import VisionConfig


class Attention(nn.Module):
  heads: int
  causal: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    dense = lambda name: nn.Dense(d, name=name, dtype=self.dtype, param_dtype=self.param_dtype)
    q, k, v = (layers.heads(dense(n)(x), self.heads) for n in ('q_proj', 'k_proj', 'v_proj'))
    bias = None
    if self.causal:
      t = x.shape[1]
      bias = jnp.where(jnp.tril(jnp.ones((t, t), bool)), 0.0,
                       jnp.finfo(jnp.float32).min)[None, None]
    return dense('out_proj')(layers.attention(q, k, v, bias=bias))


class Mlp(nn.Module):
  intermediate: int
  act: str
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.activation(self.act, 'CLIP')(nn.Dense(self.intermediate, name='fc1', **kw)(x))
    return nn.Dense(x.shape[-1], name='fc2', **kw)(h)


class EncoderLayer(nn.Module):
  """x + attn(ln1(x)), then + mlp(ln2(.)) (keys layer_norm1, self_attn, layer_norm2, mlp)."""
  heads: int
  intermediate: int
  act: str
  eps: float
  causal: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = lambda name: layers.LayerNorm(self.eps, self.param_dtype, name=name)
    x = x + Attention(self.heads, self.causal, name='self_attn', **kw)(norm('layer_norm1')(x))
    return x + Mlp(self.intermediate, self.act, name='mlp', **kw)(norm('layer_norm2')(x))


class Encoder(nn.Module):
  """The layer stack; returns every hidden state: (input, after layer 1, ..., after layer N)."""
  num_layers: int
  heads: int
  intermediate: int
  act: str
  eps: float
  causal: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    states = [x]
    for i in range(self.num_layers):
      x = EncoderLayer(self.heads, self.intermediate, self.act, self.eps, self.causal,
                       name=f'layers_{i}', dtype=self.dtype, param_dtype=self.param_dtype)(x)
      states.append(x)
    return tuple(states)


def _encoder(cfg, causal, kw):
  return Encoder(cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size,
                 cfg.hidden_act, cfg.layer_norm_eps, causal, name='encoder', **kw)


class TextEmbeddings(nn.Module):
  config: TextConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, ids):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if ids.shape[-1] > c.max_position_embeddings:
      raise ValueError(f'CLIP text of {ids.shape[-1]} tokens: the model takes at most '
                       f'{c.max_position_embeddings}.')
    tokens = layers.Embedding(c.vocab_size, c.hidden_size, name='token_embedding', **kw)(ids)
    positions = layers.Embedding(c.max_position_embeddings, c.hidden_size,
                                 name='position_embedding', **kw)(jnp.arange(ids.shape[-1]))
    return tokens + positions[None]


def pooled_index(ids, eos_token_id: int, largest: bool = False):
  """The position of the state CLIP pools: the first end-of-text token, or the largest id
  (OpenCLIP's rule, and transformers' when a config says eos_token_id = 2, as configs saved
  before its fix do)."""
  if largest or eos_token_id == 2:
    return jnp.argmax(ids, axis=-1)
  return jnp.argmax(ids == eos_token_id, axis=-1)


class TextTransformer(nn.Module):
  """ids [B, L] -> {'last_hidden_state' [B, L, D] (final-normed), 'pooled' [B, D],
  'hidden_states' (embeddings, after layer 1, ..., after layer N; not final-normed)}."""
  config: TextConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, ids):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = TextEmbeddings(c, name='embeddings', **kw)(ids)
    states = _encoder(c, True, kw)(x)
    last = layers.LayerNorm(c.layer_norm_eps, self.param_dtype, name='final_layer_norm')(states[-1])
    pooled = last[jnp.arange(last.shape[0]), pooled_index(ids, c.eos_token_id, c.pool_at_largest_id)]
    return {'last_hidden_state': last, 'pooled': pooled, 'hidden_states': states}


class VisionEmbeddings(nn.Module):
  config: VisionConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if pixels.shape[-2:] != (c.image_size, c.image_size):
      raise ValueError(f'CLIP images of {pixels.shape[-2]}x{pixels.shape[-1]} pixels: the model '
                       f'takes {c.image_size}x{c.image_size}.')
    x = jnp.transpose(pixels, (0, 2, 3, 1)).astype(self.dtype)
    patches = nn.Conv(c.hidden_size, (c.patch_size, c.patch_size), strides=c.patch_size,
                      padding='VALID', use_bias=False, name='patch_embedding', **kw)(x)
    patches = patches.reshape(x.shape[0], -1, c.hidden_size)
    cls = self.param('class_embedding', nn.initializers.normal(0.02), (c.hidden_size,),
                     self.param_dtype)
    cls = jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, c.hidden_size))
    x = jnp.concatenate([cls, patches], axis=1)
    positions = layers.Embedding(x.shape[1], c.hidden_size, name='position_embedding',
                                 **kw)(jnp.arange(x.shape[1]))
    return x + positions[None]


class VisionTransformer(nn.Module):
  """pixel values [B, 3, H, W] -> pooled [B, D]: the post-normed class token."""
  config: VisionConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = lambda name: layers.LayerNorm(c.layer_norm_eps, self.param_dtype, name=name)
    x = norm('pre_layrnorm')(VisionEmbeddings(c, name='embeddings', **kw)(pixels))
    states = _encoder(c, False, kw)(x)
    return norm('post_layernorm')(states[-1][:, 0])


class Clip(nn.Module):
  """The model its config names: text_model (+ text_projection), and for a CLIPModel also
  vision_model, visual_projection and logit_scale."""
  config: ClipConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.text_model = TextTransformer(c.text, **kw)
    if c.text_projection:
      self.text_projection = nn.Dense(c.projection_dim, use_bias=False, **kw)
    if c.vision is not None:
      self.vision_model = VisionTransformer(c.vision, **kw)
      self.visual_projection = nn.Dense(c.projection_dim, use_bias=False, **kw)
      self.logit_scale = self.param('logit_scale', nn.initializers.constant(2.6592), (),
                                    self.param_dtype)

  def encode_text(self, ids):
    """TextTransformer's outputs, plus 'text_embeds' [B, P] (the projected pooled state) when
    the model has a text projection."""
    out = dict(self.text_model(ids))
    if self.config.text_projection:
      out['text_embeds'] = self.text_projection(out['pooled'])
    return out

  def text_features(self, ids):
    """Projected pooled text [B, P] (transformers' get_text_features)."""
    return self.encode_text(ids)['text_embeds']

  def image_features(self, pixels):
    """Projected pooled image [B, P] (transformers' get_image_features)."""
    return self.visual_projection(self.vision_model(pixels))

  def __call__(self, ids, pixels=None):
    out = self.encode_text(ids)
    if self.config.vision is not None:
      out['image_embeds'] = self.image_features(pixels)
      out['logit_scale'] = self.logit_scale
    return out


def shapes(config: ClipConfig, dtype=jnp.float32):
  """The abstract parameter tree (jax.eval_shape; nothing allocated)."""
  ids = jnp.zeros((1, 1), jnp.int32)
  pixels = None
  if config.vision is not None:
    size = config.vision.image_size
    pixels = jnp.zeros((1, config.vision.num_channels, size, size))
  return jax.eval_shape(Clip(config, param_dtype=dtype).init, jax.random.key(0), ids,
                        pixels)['params']

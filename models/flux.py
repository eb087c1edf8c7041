"""FLUX.1 (schnell or dev) as a backbone: the project's Flax transformer
(models/flux_transformer.py), diffusers' Flax VAE with FLUX's 16-channel layout, and
transformers' Flax CLIP-L and T5 text encoders, all read from a diffusers folder's PyTorch
safetensors without torch (models/torch_weights.py).

States are VAE latents [B, h, w, C] NHWC (C = 16 for FLUX.1), normalised as diffusers' pipeline
does: z = (vae latent - shift_factor) * scaling_factor. The 2x2 packing into transformer tokens
happens inside `apply_fn`. The prediction is the velocity on the backbone's native interpolant:
linear for schnell and dev alike (the transformer's timestep is the flow's sigma = t). A
scheduler that shifts its sigmas (dev: resolution-dependent, exp(mu) from scheduler_config.json
and the image size) gives the backbone a `time_shift`, which samplers apply to their grid: the
sampler's step k / M maps to the transformer's timestep through the shift, and a uniform grid
is diffusers' grid of sigmas. FLUX.1-dev's guidance scale (model.guidance) goes
in through its guidance embedding; FLUX has no classifier-free guidance pass.

Conditioning (`cond`) is {'text': T5 states [L, D_t5], 'pooled': CLIP pooled output [D_clip]}
(or batched). Prompts are encoded by `encode_prompts`, outside any search program, once per
prompt (cached); the text encoders are loaded for that and dropped after, so T5 never shares
memory with the transformer unless model.keep_text_encoders is set.
"""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from models import hub
from models import pixels
from models import stable_diffusion
from models import torch_weights
from models import flux_transformer as ft
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.backbone import Decoder
from samplers import interpolants as interpolants_lib

COMPONENTS = ('transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2',
              'scheduler')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
_VAE_RENAMES = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out_0': 'proj_attn'}
_VAE_FIELDS = ('in_channels', 'out_channels', 'down_block_types', 'up_block_types',
               'block_out_channels', 'layers_per_block', 'act_fn', 'latent_channels',
               'norm_num_groups', 'sample_size', 'scaling_factor')
_HUB_FILES = ['model_index.json', '*/*.json', '*/*.txt', '*/*.safetensors', '*/*.model']


def folder(cfg) -> str:
  """The local diffusers folder of model.path (a hub id is downloaded), layout checked."""
  path = hub.resolve(cfg.path, cfg.get('revision', ''), 'FLUX model', _HUB_FILES)
  if not os.path.isfile(os.path.join(path, 'model_index.json')):
    raise ValueError(f'{cfg.path!r} is not a diffusers model folder: it has no model_index.json.')
  missing = [c for c in COMPONENTS if not os.path.isdir(os.path.join(path, c))]
  if missing:
    raise ValueError(f'{cfg.path!r} is not a FLUX folder: it lacks {", ".join(missing)} '
                     f'(needs {", ".join(COMPONENTS)}).')
  return path


def _json(path: str, what: str) -> dict:
  if not os.path.isfile(path):
    raise ValueError(f'the FLUX {what} has no {os.path.basename(path)} at {path!r}.')
  with hub.reading(f'FLUX {what} config', path):
    with open(path) as f:
      return json.load(f)


def _dtype(cfg):
  name = cfg.get('dtype', 'bfloat16')
  if name not in DTYPES:
    raise ValueError(f'model.dtype {name!r} is not supported; valid: {", ".join(DTYPES)}.')
  return DTYPES[name]


# ----------------------------------------------------------------------------- transformer


@functools.lru_cache(maxsize=2)
def _transformer(path: str, dtype_name: str):
  """(FluxConfig, params) of transformer/ (sharded or not), cast to dtype."""
  sub = os.path.join(path, 'transformer')
  config = ft.FluxConfig.from_folder(sub)
  tensors = torch_weights.read_tensors(sub, 'FLUX transformer')
  shapes = transformer_shapes(config)
  params = torch_weights.assign(shapes, tensors, 'FLUX transformer', DTYPES[dtype_name])
  return config, jax.tree.map(jnp.asarray, params)


def transformer_shapes(config: ft.FluxConfig, dtype=jnp.float32, text_length: int = 1):
  """The abstract parameter tree of the transformer (jax.eval_shape; nothing allocated)."""
  module = ft.FluxTransformer(config, param_dtype=dtype)
  cos, sin = ft.rope_tables(np.zeros((text_length + 1, 3)), config.axes_dims_rope)
  args = (jnp.zeros((1, 1, config.in_channels)),
          jnp.zeros((1, text_length, config.joint_attention_dim)),
          jnp.zeros((1, config.pooled_projection_dim)), jnp.zeros((1,)), jnp.zeros((1,)),
          cos, sin)
  return jax.eval_shape(module.init, jax.random.key(0), *args)['params']


# ----------------------------------------------------------------------------- VAE


@functools.lru_cache(maxsize=2)
def _vae(path: str, dtype_name: str):
  """(FlaxAutoencoderKL, decoder params, vae config dict). FLUX's VAE has no quant convs
  (use_quant_conv / use_post_quant_conv false); diffusers' Flax class always applies a
  post-quant conv, so it gets the identity, which is exact."""
  sub = os.path.join(path, 'vae')
  raw = _json(os.path.join(sub, 'config.json'), 'VAE')
  vae = vae_module(raw, DTYPES[dtype_name])
  shapes = jax.eval_shape(vae.init_weights, jax.random.key(0))
  skip = set()
  quant = raw.get('use_quant_conv', True), raw.get('use_post_quant_conv', True)
  for name, used in zip(('quant_conv', 'post_quant_conv'), quant):
    if not used:
      skip |= {(name, 'kernel'), (name, 'bias')}
  tensors = torch_weights.read_tensors(sub, 'FLUX VAE')
  dtype = DTYPES[dtype_name]
  params = torch_weights.assign(dict(shapes), tensors, 'FLUX VAE', dtype,
                                renames=_VAE_RENAMES, skip=skip)
  if not quant[1]:
    c = int(raw['latent_channels'])
    params['post_quant_conv'] = {'kernel': np.eye(c, dtype=np.float32)[None, None].astype(dtype),
                                 'bias': np.zeros((c,), dtype)}
  decoder_params = {k: params[k] for k in ('decoder', 'post_quant_conv')}
  return vae, jax.tree.map(jnp.asarray, decoder_params), raw


def vae_module(raw: dict, dtype=jnp.float32):
  """diffusers' FlaxAutoencoderKL for a vae/config.json dict (its Flax fields only),
  computing in dtype."""
  hub.silence_flax_deprecation()
  from diffusers import FlaxAutoencoderKL  # pylint: disable=g-import-not-at-top
  return FlaxAutoencoderKL(dtype=dtype, **{k: (tuple(v) if isinstance(v, list) else v)
                                           for k, v in raw.items() if k in _VAE_FIELDS})


def vae_factor(vae_config: dict) -> int:
  """Pixels per latent along each side."""
  return 2 ** (len(vae_config['block_out_channels']) - 1)


def make_decoder(path: str, dtype_name: str, latent_hw: tuple) -> Decoder:
  """Tweedie latents [N, h, w, C] -> images [N, H, W, 3] in [0, 1]: undo the normalisation,
  then the VAE decoder."""
  vae, params, raw = _vae(path, dtype_name)
  return decoder_from(vae, params, raw, DTYPES[dtype_name], latent_hw)


def decoder_from(vae, params, raw: dict, dtype, latent_hw: tuple) -> Decoder:
  """The Decoder of a VAE module and its decoder params (possibly abstract)."""
  scaling, shift = float(raw.get('scaling_factor', 1.0)), float(raw.get('shift_factor', 0.0))

  def decode_fn(p, z):
    latents = (z / scaling + shift).astype(dtype)
    images = vae.apply({'params': p}, latents, method=vae.decode).sample
    return pixels.signed_to_unit(jnp.transpose(images, (0, 2, 3, 1)).astype(jnp.float32))

  factor = vae_factor(raw)
  shape = (latent_hw[0] * factor, latent_hw[1] * factor, int(raw.get('out_channels', 3)))
  return Decoder(params=params, apply_fn=decode_fn, output_shape=shape)


# ----------------------------------------------------------------------------- text


_PROMPT_CACHE = {}


def _text_length(cfg) -> int:
  length = int(cfg.get('max_sequence_length', 256))
  if not 1 <= length <= 512:
    raise ValueError(f'model.max_sequence_length must be in [1, 512] (T5 tokens), got {length}.')
  return length


def _t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
  """T5's relative-position bucket (exact up to num_buckets / 4 apart, then logarithmic up to
  max_distance). transformers 4.57's Flax T5 computes it with jnp.clip(a_max=...), which
  jax 0.10 removed; this is the same map with jnp.minimum."""
  buckets = 0
  if bidirectional:
    num_buckets //= 2
    buckets = (relative_position > 0) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  exact = num_buckets // 2
  far = exact + (jnp.log(jnp.maximum(distance, 1) / exact) / jnp.log(max_distance / exact) *
                 (num_buckets - exact))
  far = jnp.minimum(far, num_buckets - 1)
  return (buckets + jnp.where(distance < exact, distance, far)).astype('i4')


def _patch_t5() -> None:
  from transformers.models.t5 import modeling_flax_t5  # pylint: disable=g-import-not-at-top
  modeling_flax_t5.FlaxT5Attention._relative_position_bucket = staticmethod(_t5_bucket)  # pylint: disable=protected-access


def _text_encoder(path: str, sub: str, what: str, cls_name: str, dtype):
  """A transformers Flax text model (no weights initialised) and its params converted from
  the folder's PyTorch safetensors; every parameter must be filled."""
  return torch_weights.flax_transformers_model(os.path.join(path, sub), cls_name, f'FLUX {what}',
                                               dtype)


def _pooled(hidden, ids, eos_token_id: int):
  """CLIP's pooled output as transformers' PyTorch CLIPTextModel takes it: the state at the
  first end-of-text token (at the largest id for configs that say eos_token_id = 2)."""
  if eos_token_id == 2:
    index = jnp.argmax(ids, axis=-1)
  else:
    index = jnp.argmax(ids == eos_token_id, axis=-1)
  return hidden[jnp.arange(hidden.shape[0]), index]


def _load_encoders(path: str, dtype_name: str):
  """(CLIP tokenizer, CLIP, its params, T5 tokenizer, T5, its params) of the folder."""
  # The tokenizers' own classes, never AutoTokenizer: a folder's tokenizer_config.json may
  # name code of its own (auto_map), which the project never runs or offers to run.
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from transformers import T5TokenizerFast  # pylint: disable=g-import-not-at-top
  dtype = DTYPES[dtype_name]
  with hub.reading('FLUX tokenizer', os.path.join(path, 'tokenizer')):
    clip_tok = CLIPTokenizer.from_pretrained(os.path.join(path, 'tokenizer'))
  with hub.reading('FLUX tokenizer_2', os.path.join(path, 'tokenizer_2')):
    t5_tok = T5TokenizerFast.from_pretrained(os.path.join(path, 'tokenizer_2'))
  clip, clip_params = _text_encoder(path, 'text_encoder', 'text encoder (CLIP)',
                                    'FlaxCLIPTextModel', dtype)
  _patch_t5()
  t5, t5_params = _text_encoder(path, 'text_encoder_2', 'text encoder 2 (T5)',
                                'FlaxT5EncoderModel', dtype)
  return clip_tok, clip, clip_params, t5_tok, t5, t5_params


_kept_encoders = functools.lru_cache(maxsize=1)(_load_encoders)


def _encode(encoders, path: str, prompts: tuple, length: int):
  """(T5 states [P, L, D_t5], CLIP pooled [P, D_clip]) in float32."""
  clip_tok, clip, clip_params, t5_tok, t5, t5_params = encoders
  ids = clip_tok(list(prompts), padding='max_length', max_length=clip_tok.model_max_length,
                 truncation=True, return_tensors='np').input_ids
  _check_vocab(ids, clip.config.vocab_size, path, 'tokenizer', 'text_encoder')
  hidden = clip(ids, params=clip_params).last_hidden_state
  pooled = np.asarray(_pooled(hidden, jnp.asarray(ids), clip.config.eos_token_id), np.float32)
  ids = t5_tok(list(prompts), padding='max_length', max_length=length, truncation=True,
               return_tensors='np').input_ids
  _check_vocab(ids, t5.config.vocab_size, path, 'tokenizer_2', 'text_encoder_2')
  states = np.asarray(t5(ids, params=t5_params).last_hidden_state, np.float32)
  return states, pooled


def _check_vocab(ids, vocab: int, path: str, tokenizer: str, encoder: str) -> None:
  if ids.max() >= vocab:
    raise ValueError(f'the {tokenizer} of {path!r} produced token {ids.max()}, but its '
                     f'{encoder} embeds only {vocab}: they do not belong together.')


def encode_prompts(cfg, prompts) -> dict:
  """{'text': T5 states [P, L, D_t5], 'pooled': CLIP pooled [P, D_clip]}, float32 numpy.

  Each prompt is encoded once per process (cached by folder, length and dtype); the encoders
  are loaded only for prompts not yet cached and released afterwards."""
  path = folder(cfg)
  length, dtype_name = _text_length(cfg), cfg.get('dtype', 'bfloat16')
  _dtype(cfg)
  key = lambda p: (os.path.abspath(path), length, dtype_name, p)
  todo = tuple(dict.fromkeys(p for p in prompts if key(p) not in _PROMPT_CACHE))
  if todo:
    keep = bool(cfg.get('keep_text_encoders', False))
    encoders = (_kept_encoders if keep else _load_encoders)(path, dtype_name)
    states, pooled = _encode(encoders, path, todo, length)
    del encoders   # unless kept, the encoders' memory goes back now
    for i, p in enumerate(todo):
      _PROMPT_CACHE[key(p)] = (states[i], pooled[i])
  rows = [_PROMPT_CACHE[key(p)] for p in prompts]
  return {'text': np.stack([r[0] for r in rows]), 'pooled': np.stack([r[1] for r in rows])}


# ----------------------------------------------------------------------------- backbone


def scheduler_shift(path: str, image_tokens: int) -> float:
  """The factor k of the shifted grid sigma = k t / (1 + (k - 1) t) that diffusers'
  FluxPipeline applies for this many image tokens: exp(mu) with use_dynamic_shifting (mu linear
  in the token count between base and max), else the scheduler's static `shift`."""
  sched = _json(os.path.join(path, 'scheduler', 'scheduler_config.json'), 'scheduler')
  if sched.get('use_dynamic_shifting', False):
    base_len = float(sched.get('base_image_seq_len', 256))
    max_len = float(sched.get('max_image_seq_len', 4096))
    base, top = float(sched.get('base_shift', 0.5)), float(sched.get('max_shift', 1.15))
    slope = (top - base) / (max_len - base_len)
    mu = image_tokens * slope + base - slope * base_len
    return math.exp(mu)
  return float(sched.get('shift', 1.0))


def latent_shape(cfg, vae_config: dict, in_channels: int) -> tuple:
  """(h, w, C) of the latents for model.image_size (0: 1024, FLUX.1's native size)."""
  factor = vae_factor(vae_config)
  size = int(cfg.get('image_size', 0)) or 1024
  channels = int(vae_config['latent_channels'])
  if channels * 4 != in_channels:
    raise ValueError(f'the FLUX transformer takes {in_channels} channels per token, but the '
                     f'VAE has {channels} latent channels ({4 * channels} once packed 2x2).')
  if size <= 0 or size % (2 * factor):
    raise ValueError(f'model.image_size={size} cannot be taken by FLUX: the VAE downsamples by '
                     f'{factor} and the latents are packed 2x2, so the size must be a positive '
                     f'multiple of {2 * factor}.')
  return (size // factor, size // factor, channels)


def make_backbone(cfg) -> Backbone:
  """The FLUX backbone of model.path, with its latent decoder."""
  path = folder(cfg)
  dtype = _dtype(cfg)
  dtype_name = cfg.get('dtype', 'bfloat16')
  config = ft.FluxConfig.from_folder(os.path.join(path, 'transformer'))
  vae_config = _json(os.path.join(path, 'vae', 'config.json'), 'VAE')
  data_shape = latent_shape(cfg, vae_config, config.in_channels)
  guidance = float(cfg.get('guidance', 0.0))
  if config.guidance_embeds and guidance <= 0:
    raise ValueError(f'{cfg.path!r} is guidance-distilled (FLUX.1-dev): set model.guidance > 0 '
                     '(diffusers\' default is 3.5).')
  if not config.guidance_embeds and guidance:
    raise ValueError(f'model.guidance={guidance} is a FLUX.1-dev knob, but {cfg.path!r} has no '
                     'guidance embedding (FLUX.1-schnell); leave model.guidance at 0.')
  t5_width = int(_json(os.path.join(path, 'text_encoder_2', 'config.json'),
                       'text encoder 2').get('d_model', -1))
  if t5_width != config.joint_attention_dim:
    raise ValueError(f'the FLUX transformer\'s joint_attention_dim is '
                     f'{config.joint_attention_dim}, but text_encoder_2 (T5) gives {t5_width}-dim '
                     'states: they do not belong together.')
  clip_width = int(_json(os.path.join(path, 'text_encoder', 'config.json'),
                         'text encoder').get('hidden_size', -1))
  if clip_width != config.pooled_projection_dim:
    raise ValueError(f'the FLUX transformer\'s pooled_projection_dim is '
                     f'{config.pooled_projection_dim}, but text_encoder (CLIP) gives '
                     f'{clip_width}-dim pooled states.')
  h, w, _ = data_shape
  shift = scheduler_shift(path, (h // 2) * (w // 2))
  uncond = encode_prompts(cfg, [''])   # before the transformer: T5 is gone when it loads
  _, params = _transformer(path, dtype_name)
  decoder = make_decoder(path, dtype_name, (h, w))
  uncond = {k: v[0] for k, v in uncond.items()}
  return assemble(config, params, uncond, data_shape, shift, guidance, dtype, decoder)


def assemble(config: ft.FluxConfig, params, uncond: dict, data_shape: tuple, time_shift: float,
             guidance: float, dtype, decoder: Decoder) -> Backbone:
  """The Backbone of a transformer config and params (real or abstract), the empty prompt's
  conditioning {'text': [L, D_t5], 'pooled': [D_clip]}, latents of data_shape."""
  h, w, _ = data_shape
  text_length = uncond['text'].shape[0]
  ids = np.concatenate([np.zeros((text_length, 3)), ft.image_ids(h, w)])
  cos, sin = ft.rope_tables(ids, config.axes_dims_rope)
  module = ft.FluxTransformer(config, dtype=dtype, param_dtype=dtype)

  def apply_fn(p, x, t, cond=None):
    text = p['uncond_text'] if cond is None else cond['text']
    pooled = p['uncond_pooled'] if cond is None else cond['pooled']
    b = x.shape[0]
    text = jnp.broadcast_to(text, (b,) + text.shape[-2:])
    pooled = jnp.broadcast_to(pooled, (b,) + pooled.shape[-1:])
    sigma = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
    g = jnp.full((b,), guidance, jnp.float32) if config.guidance_embeds else None
    out = module.apply({'params': p['transformer']}, ft.pack(x.astype(dtype)), text, pooled,
                       sigma, g, jnp.asarray(cos), jnp.asarray(sin))
    return ft.unpack(out, h, w).astype(x.dtype)   # d x / d sigma = eps - x0

  return Backbone(params={'transformer': params, 'uncond_text': uncond['text'],
                          'uncond_pooled': uncond['pooled']},
                  apply_fn=apply_fn, prediction='velocity',
                  interpolant=interpolants_lib.get_interpolant('linear'),
                  data_shape=tuple(data_shape), decoder=decoder, time_shift=time_shift)


BACKBONE = BackboneKind(make_backbone, read_prompts=stable_diffusion.read_prompts,
                        encode_prompts=encode_prompts, order=20)

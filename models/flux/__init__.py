"""FLUX.1 (schnell or dev) as a backbone, from a diffusers folder's PyTorch safetensors read
without torch:

  folder         the folder's components, configs and dtypes
  transformer    the project's Flax port of the transformer, and its weights
  vae            the project's AutoencoderKL (models/autoencoder_kl.py) with FLUX's
                 16-channel layout, and the latent decoder
  text_encoders  the project's CLIP-L and T5 encoder (models/clip/, models/t5.py), and the
                 prompts' conditioning

States are VAE latents [B, h, w, C] NHWC (C = 16 for FLUX.1), normalised as diffusers' pipeline
does: z = (vae latent - shift_factor) * scaling_factor. The 2x2 packing into transformer tokens
happens inside `apply_fn`. The prediction is the velocity on the backbone's native interpolant:
linear for schnell and dev alike (the transformer's timestep is the flow's sigma = t). A
scheduler that shifts its sigmas (dev: resolution-dependent, exp(mu) from scheduler_config.json
and the image size) gives the backbone a `time_shift`, which samplers apply to their grid: the
sampler's step k / M maps to the transformer's timestep through the shift, and a uniform grid
is diffusers' grid of sigmas. FLUX.1-dev's guidance scale (model.guidance) goes in through its
guidance embedding; FLUX has no classifier-free guidance pass.

Conditioning (`cond`) is {'text': T5 states [L, D_t5], 'pooled': CLIP pooled output [D_clip]}
(or batched), encoded outside any search program, once per prompt.
"""

import os

import jax.numpy as jnp
import numpy as np

from models import diffusers_folder
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.backbone import Decoder
from models.flux import folder as folder_lib
from models.flux import text_encoders
from models.flux import transformer as ft
from models.flux import vae as vae_lib
from samplers import interpolants as interpolants_lib


def scheduler_shift(path: str, image_tokens: int) -> float:
  """The time shift FluxPipeline applies for this many image tokens (diffusers_folder.flow_shift
  of the folder's scheduler_config.json)."""
  sched = folder_lib.component_config(path, 'scheduler', 'scheduler', 'scheduler_config.json')
  return diffusers_folder.flow_shift(sched, image_tokens)


def latent_shape(cfg, vae_config, in_channels: int) -> tuple:
  """(h, w, C) of the latents for model.image_size (0: 1024, FLUX.1's native size)."""
  factor = vae_config.factor
  channels = int(vae_config.latent_channels)
  if channels * 4 != in_channels:
    raise ValueError(f'the FLUX transformer takes {in_channels} channels per token, but the '
                     f'VAE has {channels} latent channels ({4 * channels} once packed 2x2).')
  size = diffusers_folder.image_size(
      cfg, 1024, 2 * factor, f'the VAE downsamples by {factor} and the latents are packed 2x2')
  return (size // factor, size // factor, channels)


def make_backbone(cfg) -> Backbone:
  """The FLUX backbone of model.path, with its latent decoder."""
  path = folder_lib.resolve(cfg)
  dtype_name = folder_lib.dtype_name(cfg)
  config = ft.FluxConfig.from_folder(f'{path}/transformer')
  vae_config = vae_lib.read_config(path)
  data_shape = latent_shape(cfg, vae_config, config.in_channels)
  guidance = float(cfg.get('guidance', 0.0))
  if config.guidance_embeds and guidance <= 0:
    raise ValueError(f'{cfg.path!r} is guidance-distilled (FLUX.1-dev): set model.guidance > 0 '
                     '(diffusers\' default is 3.5).')
  if not config.guidance_embeds and guidance:
    raise ValueError(f'model.guidance={guidance} is a FLUX.1-dev knob, but {cfg.path!r} has no '
                     'guidance embedding (FLUX.1-schnell); leave model.guidance at 0.')
  for component, label, width_key, field, states in (
      ('text_encoder_2', 'T5', 'd_model', 'joint_attention_dim', 'states'),
      ('text_encoder', 'CLIP', 'hidden_size', 'pooled_projection_dim', 'pooled states')):
    width = int(folder_lib.component_config(path, component, component.replace('_', ' '))
                .get(width_key, -1))
    if width != getattr(config, field):
      raise ValueError(f'the FLUX transformer\'s {field} is {getattr(config, field)}, but '
                       f'{component} ({label}) gives {width}-dim {states}: they do not belong '
                       'together.')
  h, w, _ = data_shape
  shift = scheduler_shift(path, (h // 2) * (w // 2))
  uncond = text_encoders.encode_prompts(cfg, [''])   # before the transformer: T5 is gone then
  _, params = ft.load(path, dtype_name)
  decoder = vae_lib.decoder(path, dtype_name, (h, w))
  uncond = {k: v[0] for k, v in uncond.items()}
  return assemble(config, params, uncond, data_shape, shift, guidance,
                  folder_lib.dtype(dtype_name), decoder)


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


def measured_memory(cfg):
  """FLUX.1 [schnell] and [dev] share the 12B transformer, the T5-XXL and the VAE: at
  1024 x 1024 both are the measured flux_schnell_1024 (results/memory/model_memory.md)."""
  full_size = 'FLUX.1' in str(cfg.path) and not os.path.isdir(str(cfg.path))
  return 'flux_schnell_1024' if full_size and cfg.image_size == 1024 else None


BACKBONE = BackboneKind(make_backbone, read_prompts=diffusers_folder.read_prompts,
                        encode_prompts=text_encoders.encode_prompts,
                        measured_memory=measured_memory, order=20)

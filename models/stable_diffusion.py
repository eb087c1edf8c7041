"""Stable Diffusion 1.x/2.x as a backbone: diffusers' Flax U-Net, VAE and CLIP text encoder.

The backbone's states are VAE latents [B, h, w, C] (NHWC, scaled by the VAE's scaling_factor as
diffusers does), its native interpolant is the model's own discrete DDPM schedule (read from
scheduler/scheduler_config.json, made continuous through its log-SNR), and its prediction type
is the scheduler's (`epsilon` or `v_prediction`). A continuous time t maps to the U-Net's own
timestep through `Discrete.timestep`; the project's samplers do the rest (diffusers' schedulers
are not used).

Conditioning (`cond`) is a dict holding at least `text`, the prompt's text-encoder hidden states
[L, D] (or [B, L, D]). Classifier-free guidance uses diffusers' convention,
eps = eps(none) + s (eps(text) - eps(none)) with s = model.guidance_scale (1: no guidance); both
passes run in one batch and count as one NFE. The backbone carries a `Decoder` that turns a
Tweedie latent into an image in [0, 1] for the reward.

A folder is the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/), local or a hub id, with Flax weights, or PyTorch ones when model.from_pt is set
(diffusers and transformers convert them; that needs torch installed).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from models import diffusers_folder
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.backbone import Decoder
from models.loading import hub
from samplers import interpolants as interpolants_lib
from samplers.ground import checks

COMPONENTS = ('unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler')
PREDICTIONS = {'epsilon': 'epsilon', 'v_prediction': 'v'}
DTYPES = diffusers_folder.DTYPES
_FLAX_WEIGHTS = {'unet': 'diffusion_flax_model.msgpack', 'vae': 'diffusion_flax_model.msgpack',
                 'text_encoder': 'flax_model.msgpack'}
_HUB_FILES = ['model_index.json', '*/*.json', '*/*.txt', '*/*.msgpack']
_HUB_FILES_PT = _HUB_FILES + ['*/*.safetensors', '*/*.bin']


def folder(cfg) -> str:
  """The local diffusers folder of model.path (a hub id is downloaded), layout checked."""
  from_pt = bool(cfg.get('from_pt', False))
  path = diffusers_folder.resolve(cfg, 'Stable Diffusion', COMPONENTS,
                                  _HUB_FILES_PT if from_pt else _HUB_FILES)
  for name, weights in _FLAX_WEIGHTS.items():
    if not from_pt and not os.path.isfile(os.path.join(path, name, weights)):
      raise ValueError(f'{cfg.path!r}/{name} has no Flax weights ({weights}); if it has PyTorch '
                       'weights, set model.from_pt=True (converts them; needs torch installed).')
  return path


def scheduler_interpolant(path: str):
  """(Discrete interpolant, prediction type) from scheduler/scheduler_config.json."""
  with open(os.path.join(path, 'scheduler', 'scheduler_config.json')) as f:
    sched = json.load(f)
  if sched.get('trained_betas'):
    betas = np.asarray(sched['trained_betas'], np.float64)
    interp = interpolants_lib.get_interpolant('discrete', alphas_cumprod=np.cumprod(1.0 - betas))
  else:
    interp = interpolants_lib.get_interpolant(
        'discrete', beta_schedule=sched.get('beta_schedule', 'linear'),
        beta_start=float(sched.get('beta_start', 1e-4)),
        beta_end=float(sched.get('beta_end', 0.02)),
        num_train_timesteps=int(sched.get('num_train_timesteps', 1000)))
  kind = sched.get('prediction_type', 'epsilon')
  if kind not in PREDICTIONS:
    raise ValueError(f'scheduler prediction_type {kind!r} is not supported; valid: '
                     f'{", ".join(PREDICTIONS)}.')
  return interp, PREDICTIONS[kind]


@functools.lru_cache(maxsize=4)
def _load_components(path: str, from_pt: bool, dtype_name: str):
  hub.silence_flax_deprecation()
  from diffusers import FlaxAutoencoderKL  # pylint: disable=g-import-not-at-top
  from diffusers import FlaxUNet2DConditionModel  # pylint: disable=g-import-not-at-top
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from transformers import FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
  dtype = DTYPES[dtype_name]
  with hub.reading('Stable Diffusion U-Net', os.path.join(path, 'unet')):
    unet, unet_params = FlaxUNet2DConditionModel.from_pretrained(
        path, subfolder='unet', from_pt=from_pt, dtype=dtype)
  with hub.reading('Stable Diffusion VAE', os.path.join(path, 'vae')):
    vae, vae_params = FlaxAutoencoderKL.from_pretrained(
        path, subfolder='vae', from_pt=from_pt, dtype=dtype)
  with hub.reading('Stable Diffusion text encoder', os.path.join(path, 'text_encoder')):
    text_encoder, text_params = FlaxCLIPTextModel.from_pretrained(
        os.path.join(path, 'text_encoder'), from_pt=from_pt, dtype=dtype, _do_init=False)
  with hub.reading('Stable Diffusion tokenizer', os.path.join(path, 'tokenizer')):
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(path, 'tokenizer'))
  for name, params in (('unet', unet_params), ('vae', vae_params),
                       ('text_encoder', text_params)):
    bad = checks.first_non_finite(params)
    if bad:
      raise ValueError(f'the Stable Diffusion {name} weights in {path!r} hold NaN or inf '
                       f'(first: {bad}): the files are damaged or were saved from a diverged '
                       'model.')
  cast = lambda p: jax.tree.map(lambda a: jnp.asarray(a, dtype), p)
  return (unet, cast(unet_params), vae, cast(vae_params), text_encoder, cast(text_params),
          tokenizer)


def components(cfg):
  """(unet, unet_params, vae, vae_params, text_encoder, text_params, tokenizer), loaded once
  per process."""
  dtype = cfg.get('dtype', 'float32')
  if dtype not in DTYPES:
    raise ValueError(f'model.dtype {dtype!r} is not supported; valid: {", ".join(DTYPES)}.')
  return _load_components(folder(cfg), bool(cfg.get('from_pt', False)), dtype)


def latent_shape(cfg, unet, vae) -> tuple:
  """(h, w, C) of the latents for model.image_size (0: the U-Net's native sample size)."""
  vae_factor = diffusers_folder.vae_factor(vae.config)
  unet_factor = 2 ** (len(unet.config.block_out_channels) - 1)
  native = int(unet.config.sample_size) * vae_factor
  size = diffusers_folder.image_size(
      cfg, native, vae_factor * unet_factor,
      f'the VAE downsamples by {vae_factor} and the U-Net by {unet_factor} more')
  h = size // vae_factor
  return (h, h, int(unet.config.in_channels))


def encode_prompts(cfg, prompts) -> np.ndarray:
  """Text-encoder hidden states [P, L, D] of a list of prompts (the U-Net's cross-attention)."""
  _, _, _, _, text_encoder, text_params, tokenizer = components(cfg)
  ids = tokenizer(list(prompts), padding='max_length', max_length=tokenizer.model_max_length,
                  truncation=True, return_tensors='np').input_ids
  diffusers_folder.check_vocab(ids, text_encoder.config.vocab_size, cfg.path, 'tokenizer',
                              'text encoder')
  return np.asarray(_text_states_fn(text_encoder)(text_params, ids), np.float32)


@functools.lru_cache(maxsize=4)
def _text_states_fn(text_encoder):
  return jax.jit(lambda p, ids: text_encoder(ids, params=p).last_hidden_state)


def make_backbone(cfg) -> Backbone:
  """The Stable Diffusion backbone of model.path, with its latent decoder."""
  unet, unet_params, vae, vae_params, _, _, _ = components(cfg)
  data_shape = latent_shape(cfg, unet, vae)
  interp, prediction = scheduler_interpolant(folder(cfg))
  scale = float(cfg.get('guidance_scale', 1.0))
  if scale < 1.0:
    raise ValueError(f'model.guidance_scale must be >= 1 (1: no guidance), got {scale}.')
  uncond = encode_prompts(cfg, [''])[0]
  text_dim = int(unet.config.cross_attention_dim)
  if uncond.shape[-1] != text_dim:
    raise ValueError(f'the text encoder of {cfg.path!r} gives {uncond.shape[-1]}-dim states, '
                     f'the U-Net cross-attends to {text_dim}.')
  dtype = DTYPES[cfg.get('dtype', 'float32')]
  decoder = diffusers_folder.vae_decoder(vae, vae_params, dict(vae.config), dtype, data_shape[:2])
  return assemble(unet, unet_params, jnp.asarray(uncond), interp, prediction, data_shape, scale, dtype,
                  decoder)


def assemble(unet, unet_params, uncond, interp, prediction: str, data_shape: tuple,
             scale: float, dtype, decoder: Decoder) -> Backbone:
  """The Backbone of a Flax U-Net and its params (real or abstract), the empty prompt's text
  states uncond [L, D], and classifier-free guidance scale `scale`."""

  def apply_fn(params, x, t, cond=None):
    text = params['uncond'] if cond is None else cond['text']
    text = jnp.broadcast_to(text, x.shape[:1] + text.shape[-2:]).astype(dtype)
    timesteps = interp.timestep(t)
    sample = jnp.transpose(x, (0, 3, 1, 2)).astype(dtype)   # diffusers' U-Net is NCHW
    if scale == 1.0 or cond is None:
      out = unet.apply({'params': params['unet']}, sample, timesteps, text).sample
    else:
      null = jnp.broadcast_to(params['uncond'].astype(dtype), text.shape)
      both = unet.apply({'params': params['unet']}, jnp.concatenate([sample, sample]),
                        jnp.concatenate([timesteps, timesteps]),
                        jnp.concatenate([text, null])).sample
      with_text, without = jnp.split(both, 2)
      out = without + scale * (with_text - without)
    return jnp.transpose(out, (0, 2, 3, 1)).astype(x.dtype)

  return Backbone(params={'unet': unet_params, 'uncond': uncond},
                  apply_fn=apply_fn, prediction=prediction, interpolant=interp,
                  data_shape=tuple(data_shape), decoder=decoder)


BACKBONE = BackboneKind(make_backbone, read_prompts=diffusers_folder.read_prompts,
                        encode_prompts=encode_prompts,
                        order=10)

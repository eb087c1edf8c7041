"""Stable Diffusion 1.x/2.x and SDXL as backbones, in the project's Flax ports: the U-Net
(unet.py), AutoencoderKL (models/autoencoder_kl.py) and CLIP text encoders (models/clip/),
read from the PyTorch safetensors of a diffusers folder without torch.

The backbone's states are VAE latents [B, h, w, C] (NHWC, scaled by the VAE's scaling_factor as
diffusers does), its native interpolant is the model's own discrete DDPM schedule (read from
scheduler/scheduler_config.json, made continuous through its log-SNR), and its prediction type
is the scheduler's (`epsilon` or `v_prediction`). A continuous time t maps to the U-Net's own
timestep through `Discrete.timestep`; the project's samplers do the rest (diffusers' schedulers
are not used).

Conditioning (`cond`) is a dict holding `text`, the prompt's text states [L, D] (or [B, L, D]),
and for SDXL `pooled` [D_pool]. SDXL's size and crop micro-conditioning is the pipeline's
default: original size = target size = the image size, crop corner (0, 0). Classifier-free
guidance uses diffusers' convention, eps = eps(none) + s (eps(text) - eps(none)) with
s = model.guidance_scale (1: no guidance); both passes run in one batch and count as one NFE.
The unconditional states are the empty prompt's, or zeros where the folder's model_index.json
sets force_zeros_for_empty_prompt (SDXL), as the pipelines do. The backbone carries a `Decoder`
that turns a Tweedie latent into an image in [0, 1] for the reward.

A folder is the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/, and for SDXL text_encoder_2/, tokenizer_2/), local or a hub id; model.variant picks
the weight files of a variant (fp16: *.fp16.safetensors).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from models import autoencoder_kl
from models import diffusers_folder
from models import backbone as backbone_lib
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.backbone import Decoder
from models.loading import hub
from models.loading import torch_weights
from models.stable_diffusion import text as text_lib
from models.stable_diffusion import unet as unet_lib
from samplers import interpolants as interpolants_lib

COMPONENTS = ('unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler')
XL_COMPONENTS = ('text_encoder_2', 'tokenizer_2')
PREDICTIONS = {'epsilon': 'epsilon', 'v_prediction': 'v'}
DTYPES = diffusers_folder.DTYPES


def folder(cfg) -> str:
  """The local diffusers folder of model.path (a hub id is downloaded), layout checked."""
  files = ['model_index.json', '*/*.json', '*/*.txt'] + torch_weights.hub_patterns(
      cfg.get('variant', ''))
  return diffusers_folder.resolve(cfg, 'Stable Diffusion', COMPONENTS, files)


def is_xl(path: str) -> bool:
  """An SDXL folder: its U-Net takes the text_time added embedding."""
  return unet_config(path).addition_embed_type == 'text_time'


def pipeline_config(path: str) -> dict:
  return hub.read_json(os.path.join(path, 'model_index.json'), 'Stable Diffusion')


def unet_config(path: str) -> unet_lib.UNetConfig:
  return unet_lib.read_config(os.path.join(path, 'unet'), 'Stable Diffusion U-Net')


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


@functools.lru_cache(maxsize=2)
def load_unet(path: str, dtype_name: str, variant: str = ''):
  """(UNetConfig, params) of the folder's unet/, strictly."""
  sub = os.path.join(path, 'unet')
  config = unet_config(path)
  dtype = DTYPES[dtype_name]
  tensors = torch_weights.read_tensors(sub, 'Stable Diffusion U-Net', variant)
  params = torch_weights.assign(unet_lib.shapes(config, dtype), tensors,
                                'Stable Diffusion U-Net', dtype)
  return config, jax.tree.map(jnp.asarray, params)


def load_vae(path: str, dtype_name: str, variant: str = '', parts=('decoder',)):
  """(AutoencoderKL module, params, VAEConfig) of the folder's vae/."""
  return autoencoder_kl.load(os.path.join(path, 'vae'), 'Stable Diffusion VAE', dtype_name,
                             tuple(parts), variant)


def _dtype_name(cfg) -> str:
  return diffusers_folder.dtype_name(cfg, 'float32')


def latent_shape(cfg, unet: unet_lib.UNetConfig, vae: autoencoder_kl.VAEConfig) -> tuple:
  """(h, w, C) of the latents for model.image_size (0: the U-Net's native sample size)."""
  unet_factor = 2 ** (len(unet.block_out_channels) - 1)
  native = int(unet.sample_size) * vae.factor
  size = diffusers_folder.image_size(
      cfg, native, vae.factor * unet_factor,
      f'the VAE downsamples by {vae.factor} and the U-Net by {unet_factor} more')
  h = size // vae.factor
  return (h, h, int(unet.in_channels))


def encode_prompts(cfg, prompts):
  """SD: text states [P, L, D]; SDXL: {'text': [P, L, D], 'pooled': [P, D_pool]} (numpy)."""
  path = folder(cfg)
  out = text_lib.encode(path, _dtype_name(cfg), is_xl(path), tuple(prompts))
  return out if 'pooled' in out else out['text']


def _uncond(cfg, path: str, xl: bool) -> dict:
  """The empty prompt's conditioning, or zeros of its shape (force_zeros_for_empty_prompt)."""
  out = text_lib.encode(path, _dtype_name(cfg), xl, ('',))
  if pipeline_config(path).get('force_zeros_for_empty_prompt', False):
    out = {k: np.zeros_like(v) for k, v in out.items()}
  return {k: v[0] for k, v in out.items()}


def time_ids(data_shape: tuple, factor: int) -> np.ndarray:
  """SDXL's micro-conditioning [6]: original (h, w), crop corner (0, 0), target (h, w), in
  pixels, the pipeline's defaults."""
  h, w = data_shape[0] * factor, data_shape[1] * factor
  return np.asarray([h, w, 0, 0, h, w], np.float32)


def make_backbone(cfg) -> Backbone:
  """The Stable Diffusion (or SDXL) backbone of model.path, with its latent decoder."""
  path = folder(cfg)
  dtype_name, variant = _dtype_name(cfg), cfg.get('variant', '')
  xl = is_xl(path)
  if xl:
    missing = [c for c in XL_COMPONENTS if not os.path.isdir(os.path.join(path, c))]
    if missing:
      raise ValueError(f'{cfg.path!r} has an SDXL U-Net but lacks {", ".join(missing)}.')
  config = unet_config(path)
  vae_config = autoencoder_kl.read_config(os.path.join(path, 'vae'), 'Stable Diffusion VAE')
  data_shape = latent_shape(cfg, config, vae_config)
  interp, prediction = scheduler_interpolant(path)
  scale = float(cfg.get('guidance_scale', 1.0))
  if scale < 1.0:
    raise ValueError(f'model.guidance_scale must be >= 1 (1: no guidance), got {scale}.')
  uncond = _uncond(cfg, path, xl)
  if uncond['text'].shape[-1] != config.cross_attention_dim:
    raise ValueError(f'the text encoder{"s" if xl else ""} of {cfg.path!r} give '
                     f'{uncond["text"].shape[-1]}-dim states, the U-Net cross-attends to '
                     f'{config.cross_attention_dim}.')
  ids = None
  if xl:
    pooled = uncond['pooled'].shape[-1] + 6 * config.addition_time_embed_dim
    if pooled != config.projection_class_embeddings_input_dim:
      raise ValueError(f'the SDXL text_encoder_2 of {cfg.path!r} pools to '
                       f'{uncond["pooled"].shape[-1]} dims; with 6 time ids the U-Net\'s '
                       f'added embedding would take {pooled}, not '
                       f'{config.projection_class_embeddings_input_dim}.')
    ids = time_ids(data_shape, vae_config.factor)
  dtype = DTYPES[dtype_name]
  _, unet_params = load_unet(path, dtype_name, variant)   # checked against the text first
  vae, vae_params, _ = load_vae(path, dtype_name, variant)
  decoder = diffusers_folder.vae_decoder(vae, vae_params, vae_config, dtype, data_shape[:2])
  return assemble(config, unet_params, jax.tree.map(jnp.asarray, uncond), interp, prediction,
                  data_shape, scale, dtype, decoder, ids)


def assemble(config: unet_lib.UNetConfig, unet_params, uncond: dict, interp, prediction: str,
             data_shape: tuple, scale: float, dtype, decoder: Decoder,
             time_ids_=None) -> Backbone:
  """The Backbone of the U-Net and its params (real or abstract), the unconditional
  conditioning uncond {'text': [L, D] (, 'pooled': [P])}, and classifier-free guidance scale
  `scale`; time_ids_ [6] for SDXL."""
  unet = unet_lib.UNet2DCondition(config, dtype=dtype, param_dtype=dtype)
  xl = config.addition_embed_type == 'text_time'

  def conditions(params, cond, b):
    cond = params['uncond'] if cond is None else cond
    text = jnp.broadcast_to(cond['text'], (b,) + cond['text'].shape[-2:])
    added = None
    if xl:
      added = {'text_embeds': jnp.broadcast_to(cond['pooled'], (b, cond['pooled'].shape[-1])),
               'time_ids': jnp.broadcast_to(params['time_ids'], (b, 6))}
    return text, added

  def apply_fn(params, x, t, cond=None):
    b = x.shape[0]
    timesteps = interp.timestep(t)
    text, added = conditions(params, cond, b)
    if scale == 1.0 or cond is None:
      out = unet.apply({'params': params['unet']}, x, timesteps, text, added)
    else:
      null, null_added = conditions(params, None, b)
      run = lambda *args: unet.apply({'params': params['unet']}, *args)
      out = backbone_lib.guided(run, scale, (x, timesteps, text, added),
                                (x, timesteps, null, null_added))
    return out.astype(x.dtype)

  params = {'unet': unet_params, 'uncond': dict(uncond)}
  if xl:
    params['time_ids'] = jnp.asarray(time_ids_)
  return Backbone(params=params, apply_fn=apply_fn, prediction=prediction, interpolant=interp,
                  data_shape=tuple(data_shape), decoder=decoder)


def measured_memory(cfg):
  """Stable Diffusion 2.x-base from the hub at 512 x 512 is the measured sd21_base_512
  (results/memory/model_memory.md)."""
  base = str(cfg.path).startswith('stabilityai/stable-diffusion-2') and 'base' in str(cfg.path)
  return 'sd21_base_512' if base and cfg.get('image_size', 0) in (0, 512) else None


BACKBONE = BackboneKind(make_backbone, read_prompts=diffusers_folder.read_prompts,
                        encode_prompts=encode_prompts, measured_memory=measured_memory,
                        order=10)

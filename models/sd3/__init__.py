"""Stable Diffusion 3 and 3.5 (medium, large; SD3-medium too) as a backbone, from a diffusers
folder's PyTorch safetensors read without torch:

  folder         the folder's components, configs and dtypes
  transformer    the project's Flax port of the MMDiT (SD3Transformer2DModel), and its weights
  text_encoders  CLIP-L, OpenCLIP bigG and T5 (the project's ports in models/clip/ and
                 models/t5.py), and the prompts' conditioning
and the project's AutoencoderKL (models/autoencoder_kl.py) with SD3's 16-channel layout (no
quant convs, a shift factor) as the latent decoder.

States are VAE latents [B, h, w, 16] NHWC, normalised as diffusers' pipeline does:
z = (vae latent - shift_factor) * scaling_factor; the transformer patchifies them itself. The
prediction is the velocity on the backbone's native interpolant, linear (the transformer's
timestep is 1000 sigma with sigma = t). The scheduler's static shift (3.0 for SD3.5) is the
backbone's `time_shift`, which samplers apply to their grid; `grid_end` is the scheduler's
sigma_min, so time_grid 'flow_match' is StableDiffusion3Pipeline's grid exactly (uniform
grids are FLUX's convention).

Classifier-free guidance is the pipeline's: v = v(none) + s (v(text) - v(none)) with
s = model.guidance_scale (1: off), the unconditional conditioning the empty prompt's encoding
(the pipeline's default negative prompt); both passes run in one batch and count as one NFE,
as for Stable Diffusion. SD3.5's skip-layer guidance (off by default in the pipeline) is not
ported.

Conditioning (`cond`) is {'text': [L, D_t5] with L = 77 + max_sequence_length, 'pooled':
[P_l + P_g]} (or batched), encoded outside any search program, once per prompt.
"""

import os

import jax.numpy as jnp

from models import autoencoder_kl
from models import diffusers_folder
from models import backbone as backbone_lib
from models.backbone import Backbone
from models.backbone import BackboneKind
from models.backbone import Decoder
from models.sd3 import folder as folder_lib
from models.sd3 import text_encoders
from models.sd3 import transformer as st
from samplers import interpolants as interpolants_lib

# The hub's SD3.5 folders and the row of results/memory/model_memory.json each is at 1024 px.
MEASURED = {'stabilityai/stable-diffusion-3.5-large': 'sd35_large_1024',
            'stabilityai/stable-diffusion-3.5-medium': 'sd35_medium_1024'}


def latent_shape(cfg, config: st.SD3Config, vae_config) -> tuple:
  """(h, w, C) of the latents for model.image_size (0: the transformer's native sample_size
  times the VAE's factor, 1024 for SD3.5)."""
  factor = vae_config.factor
  channels = int(vae_config.latent_channels)
  if channels != config.in_channels:
    raise ValueError(f'the SD3 transformer takes {config.in_channels} latent channels, but the '
                     f'VAE has {channels}: they do not belong together.')
  size = diffusers_folder.image_size(
      cfg, config.sample_size * factor, factor * config.patch_size,
      f'the VAE downsamples by {factor} and the transformer takes {config.patch_size} x '
      f'{config.patch_size} patches')
  return (size // factor, size // factor, channels)


def vae_decoder(path: str, dtype_name: str, vae_config, latent_hw: tuple) -> Decoder:
  """Tweedie latents [N, h, w, 16] -> images [N, H, W, 3] in [0, 1]."""
  vae, params, _ = autoencoder_kl.load(os.path.join(path, 'vae'), 'SD3 VAE', dtype_name,
                                       ('decoder',))
  return diffusers_folder.vae_decoder(vae, params, vae_config, diffusers_folder.DTYPES[dtype_name],
                                      latent_hw)


def make_backbone(cfg) -> Backbone:
  """The SD3 backbone of model.path, with its latent decoder."""
  path = folder_lib.resolve(cfg)
  dtype_name = folder_lib.dtype_name(cfg)
  config = st.SD3Config.from_folder(os.path.join(path, 'transformer'))
  vae_config = autoencoder_kl.read_config(os.path.join(path, 'vae'), 'SD3 VAE')
  data_shape = latent_shape(cfg, config, vae_config)
  scale = float(cfg.get('guidance_scale', 1.0))
  if not scale >= 1.0:
    raise ValueError(f'model.guidance_scale must be >= 1 (1: no guidance), got {scale}.')
  uncond = text_encoders.encode_prompts(cfg, [''])   # before the transformer: T5 is gone then
  uncond = {k: v[0] for k, v in uncond.items()}
  for key, field, what in (('text', 'joint_attention_dim', 'T5 states'),
                           ('pooled', 'pooled_projection_dim', 'pooled CLIP projections')):
    if uncond[key].shape[-1] != getattr(config, field):
      raise ValueError(f'the SD3 transformer\'s {field} is {getattr(config, field)}, but the '
                       f'text encoders give {uncond[key].shape[-1]}-dim {what}: they do not '
                       'belong together.')
  sched = folder_lib.component_config(path, 'scheduler', 'scheduler', 'scheduler_config.json')
  h, w, _ = data_shape
  tokens = (h // config.patch_size) * (w // config.patch_size)
  _, params = st.load(path, dtype_name)
  decoder = vae_decoder(path, dtype_name, vae_config, (h, w))
  return assemble(config, params, uncond, data_shape, diffusers_folder.flow_shift(sched, tokens),
                  scale, diffusers_folder.DTYPES[dtype_name], decoder,
                  diffusers_folder.flow_grid_end(sched))


def assemble(config: st.SD3Config, params, uncond: dict, data_shape: tuple, time_shift: float,
             scale: float, dtype, decoder: Decoder, grid_end: float = 1e-3) -> Backbone:
  """The Backbone of a transformer config and params (real or abstract), the empty prompt's
  conditioning {'text': [L, D], 'pooled': [P]}, latents of data_shape, guidance scale `scale`."""
  module = st.SD3Transformer(config, dtype=dtype, param_dtype=dtype)

  def conditions(p, cond, b):
    cond = {'text': p['uncond_text'], 'pooled': p['uncond_pooled']} if cond is None else cond
    return (jnp.broadcast_to(cond['text'], (b,) + cond['text'].shape[-2:]),
            jnp.broadcast_to(cond['pooled'], (b,) + cond['pooled'].shape[-1:]))

  def apply_fn(p, x, t, cond=None):
    b = x.shape[0]
    sigma = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
    text, pooled = conditions(p, cond, b)
    run = lambda *args: module.apply({'params': p['transformer']}, *args)
    if scale == 1.0 or cond is None:
      out = run(x.astype(dtype), text, pooled, sigma)
    else:   # both passes in one batch, as the pipeline does
      null_text, null_pooled = conditions(p, None, b)
      xd = x.astype(dtype)
      out = backbone_lib.guided(run, scale, (xd, text, pooled, sigma),
                                (xd, null_text, null_pooled, sigma), jnp.float32)
    return out.astype(x.dtype)   # d x / d sigma = eps - x0

  return Backbone(params={'transformer': params, 'uncond_text': uncond['text'],
                          'uncond_pooled': uncond['pooled']},
                  apply_fn=apply_fn, prediction='velocity',
                  interpolant=interpolants_lib.get_interpolant('linear'),
                  data_shape=tuple(data_shape), decoder=decoder, time_shift=time_shift,
                  grid_end=grid_end)


def measured_memory(cfg):
  """SD3.5-large and -medium from the hub at 1024 x 1024 are the measured sd35_large_1024 and
  sd35_medium_1024 (results/memory/model_memory.md)."""
  row = MEASURED.get(str(cfg.path))
  return row if row and cfg.get('image_size', 0) in (0, 1024) else None


BACKBONE = BackboneKind(make_backbone, read_prompts=diffusers_folder.read_prompts,
                        encode_prompts=text_encoders.encode_prompts,
                        measured_memory=measured_memory, order=30)

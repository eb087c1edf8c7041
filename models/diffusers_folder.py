"""What every text-to-image backbone shares: a diffusers folder, its dtypes and configs, the VAE
decoder of its latents, its tokenizers' vocabulary check, and the run's prompts.

A backbone package (models/flux/, models/stable_diffusion/) adds its own network and a short
declaration; the folder layout, the latent <-> image plumbing and the prompt reader are here.
"""

import os

import jax.numpy as jnp

from models.backbone import Decoder
from models.loading import hub
from samplers.ground import pixels

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def resolve(cfg, what: str, components, hub_files) -> str:
  """The local diffusers folder of model.path (a hub id is downloaded): model_index.json and
  every one of `components` present, else one line naming what is missing."""
  path = hub.resolve(cfg.path, cfg.get('revision', ''), f'{what} model', hub_files)
  if not os.path.isfile(os.path.join(path, 'model_index.json')):
    raise ValueError(f'{cfg.path!r} is not a diffusers model folder: it has no model_index.json.')
  missing = [c for c in components if not os.path.isdir(os.path.join(path, c))]
  if missing:
    raise ValueError(f'{cfg.path!r} is not a {what} folder: it lacks {", ".join(missing)} '
                     f'(needs {", ".join(components)}).')
  return path


def dtype_name(cfg, default: str, allowed=tuple(DTYPES)) -> str:
  """model.dtype, checked against the names this backbone supports."""
  name = cfg.get('dtype', default)
  if name not in allowed:
    raise ValueError(f'model.dtype {name!r} is not supported; valid: {", ".join(allowed)}.')
  return name


def image_size(cfg, native: int, multiple: int, why: str) -> int:
  """model.image_size (0: the native size), a positive multiple of `multiple`."""
  size = int(cfg.get('image_size', 0)) or native
  if size <= 0 or size % multiple:
    raise ValueError(f'model.image_size={size} cannot be taken by this model: {why}, so the '
                     f'size must be a positive multiple of {multiple} (native: {native}).')
  return size


def vae_decoder(vae, params, config, dtype, latent_hw: tuple) -> Decoder:
  """The Decoder of an AutoencoderKL (models/autoencoder_kl.py) and its decoder params (real or
  abstract): latents z [N, h, w, C] (NHWC, normalised as diffusers' pipelines do:
  z = (latent - shift) * scale) -> images [N, H, W, 3] in [0, 1]."""
  scaling, shift = float(config.scaling_factor), float(config.shift_factor or 0.0)

  def decode_fn(p, z):
    latents = (z / scaling + shift).astype(dtype)
    images = vae.apply({'params': p}, latents, method=vae.decode)
    return pixels.signed_to_unit(images.astype(jnp.float32))

  factor = config.factor
  shape = (latent_hw[0] * factor, latent_hw[1] * factor, int(config.out_channels))
  return Decoder(params=params, apply_fn=decode_fn, output_shape=shape)


def check_vocab(ids, vocab: int, path: str, tokenizer: str, encoder: str) -> None:
  """A tokenizer whose ids its text encoder cannot embed does not belong to it."""
  if ids.max() >= vocab:
    raise ValueError(f'the {tokenizer} of {path!r} produced token {ids.max()}, but its '
                     f'{encoder} embeds only {vocab}: they do not belong together.')


def read_prompts(cfg) -> list:
  """The prompts of a run: config.prompt_file (one per line) if set, else config.prompt."""
  path = cfg.get('prompt_file', '')
  if path:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'prompt_file {path!r} does not exist.')
    with open(path) as f:
      prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
      raise ValueError(f'prompt_file {path!r} holds no prompts (one per line).')
    return prompts
  prompt = cfg.get('prompt', '')
  if isinstance(prompt, (tuple, list)):
    return [str(p) for p in prompt]
  return [str(prompt)]

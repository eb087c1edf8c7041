"""What every text-to-image backbone shares: a diffusers folder, its dtypes and configs, the VAE
decoder of its latents, its tokenizers' vocabulary check, and the run's prompts.

A backbone package (models/flux/, models/sd3/, models/stable_diffusion/) adds its own network
and a short declaration; the folder layout, the latent <-> image plumbing and the prompt reader
are here.
"""

import dataclasses
import json
import math
import os

import jax.numpy as jnp
import numpy as np

from models.backbone import Decoder
from models.loading import hub
from samplers import schedules
from samplers.ground import pixels

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


@dataclasses.dataclass(frozen=True)
class Layout:
  """A backbone family's diffusers folder: its name in messages, the component folders it
  needs, the hub files a download fetches, and the dtypes its port runs in."""
  what: str
  components: tuple
  hub_files: tuple
  dtypes: tuple = ('float32', 'bfloat16')
  default_dtype: str = 'bfloat16'

  def resolve(self, cfg) -> str:
    """The local folder of model.path (a hub id is downloaded), layout checked."""
    return resolve(cfg, self.what, self.components, list(self.hub_files))

  def component_config(self, path: str, component: str, what: str,
                       name: str = 'config.json') -> dict:
    """A component's JSON config (transformer/config.json, scheduler/scheduler_config.json...)."""
    return hub.read_json(os.path.join(path, component, name), f'{self.what} {what}')

  def dtype_name(self, cfg) -> str:
    """model.dtype (the family's default if unset)."""
    return dtype_name(cfg, self.default_dtype, self.dtypes)


def config_from_json(cls, path: str):
  """A dataclass of a component's architecture from path/config.json: the fields it names
  (lists as tuples; diffusers' bookkeeping and unknown keys ignored)."""
  with open(os.path.join(path, 'config.json')) as f:
    raw = json.load(f)
  names = {f.name for f in dataclasses.fields(cls)}
  return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items()
                if k in names})


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


def flow_shift(scheduler: dict, image_tokens: int) -> float:
  """The factor k of the shifted grid sigma = k t / (1 + (k - 1) t) that diffusers'
  FlowMatchEulerDiscreteScheduler (its scheduler_config.json, `scheduler`) applies for this many
  image tokens: exp(mu) with use_dynamic_shifting (mu linear in the token count between base
  and max, as the FLUX and SD3 pipelines compute it), else the static `shift`."""
  if scheduler.get('use_dynamic_shifting', False):
    base_len = float(scheduler.get('base_image_seq_len', 256))
    max_len = float(scheduler.get('max_image_seq_len', 4096))
    base, top = float(scheduler.get('base_shift', 0.5)), float(scheduler.get('max_shift', 1.15))
    slope = (top - base) / (max_len - base_len)
    mu = image_tokens * slope + base - slope * base_len
    return math.exp(mu)
  return float(scheduler.get('shift', 1.0))


def flow_grid_end(scheduler: dict) -> float:
  """The last nonzero time of the scheduler's default grid before its shift: its sigma_min,
  1 / num_train_timesteps, itself shifted by the static `shift` (diffusers shifts the training
  sigmas in __init__ and the grid again in set_timesteps)."""
  first = 1.0 / float(scheduler.get('num_train_timesteps', 1000))
  if scheduler.get('use_dynamic_shifting', False):
    return first
  return schedules.shift_time(first, float(scheduler.get('shift', 1.0)))


def encode_cached(cache: dict, cfg, path: str, dtype_name: str, length: int, load, kept,
                  encode, prompts) -> tuple:
  """Per-prompt text encodings, each computed once per process: cached by (folder, length,
  dtype, prompt), the new prompts encoded together by encode(encoders, path, prompts) ->
  tuple of [P, ...] arrays, with encoders = load(path, dtype_name, length) loaded only when
  some prompt is new and released afterwards (`kept`, the cached loader, where
  model.keep_text_encoders is set). Returns the tuple of [len(prompts), ...] arrays."""
  key = lambda p: (os.path.abspath(path), length, dtype_name, p)
  todo = tuple(dict.fromkeys(p for p in prompts if key(p) not in cache))
  if todo:
    keep = bool(cfg.get('keep_text_encoders', False))
    parts = encode((kept if keep else load)(path, dtype_name, length), path, todo)
    for i, p in enumerate(todo):   # unless kept, the encoders' memory goes back now
      cache[key(p)] = tuple(part[i] for part in parts)
  rows = [cache[key(p)] for p in prompts]
  return tuple(np.stack([r[j] for r in rows]) for j in range(len(rows[0])))


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

"""FLUX.1's 16-channel VAE: diffusers' FlaxAutoencoderKL read from the folder's PyTorch
safetensors, and the decoder of the backbone's latents."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from models import diffusers_folder
from models.backbone import Decoder
from models.flux import folder as folder_lib
from models.loading import hub
from models.loading import torch_weights

_RENAMES = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out_0': 'proj_attn'}
_FIELDS = ('in_channels', 'out_channels', 'down_block_types', 'up_block_types',
           'block_out_channels', 'layers_per_block', 'act_fn', 'latent_channels',
           'norm_num_groups', 'sample_size', 'scaling_factor')


def module(raw: dict, dtype=jnp.float32):
  """diffusers' FlaxAutoencoderKL for a vae/config.json dict (its Flax fields only),
  computing in dtype."""
  hub.silence_flax_deprecation()
  from diffusers import FlaxAutoencoderKL  # pylint: disable=g-import-not-at-top
  return FlaxAutoencoderKL(dtype=dtype, **{k: (tuple(v) if isinstance(v, list) else v)
                                           for k, v in raw.items() if k in _FIELDS})


@functools.lru_cache(maxsize=2)
def load(path: str, dtype_name: str):
  """(FlaxAutoencoderKL, decoder params, vae config dict). FLUX's VAE has no quant convs
  (use_quant_conv / use_post_quant_conv false); diffusers' Flax class always applies a
  post-quant conv, so it gets the identity, which is exact."""
  sub = os.path.join(path, 'vae')
  raw = folder_lib.component_config(path, 'vae', 'VAE')
  dtype = folder_lib.dtype(dtype_name)
  vae = module(raw, dtype)
  shapes = jax.eval_shape(vae.init_weights, jax.random.key(0))
  skip = set()
  quant = raw.get('use_quant_conv', True), raw.get('use_post_quant_conv', True)
  for name, used in zip(('quant_conv', 'post_quant_conv'), quant):
    if not used:
      skip |= {(name, 'kernel'), (name, 'bias')}
  tensors = torch_weights.read_tensors(sub, 'FLUX VAE')
  params = torch_weights.assign(dict(shapes), tensors, 'FLUX VAE', dtype, renames=_RENAMES,
                                skip=skip)
  if not quant[1]:
    c = int(raw['latent_channels'])
    params['post_quant_conv'] = {'kernel': np.eye(c, dtype=np.float32)[None, None].astype(dtype),
                                 'bias': np.zeros((c,), dtype)}
  decoder_params = {k: params[k] for k in ('decoder', 'post_quant_conv')}
  return vae, jax.tree.map(jnp.asarray, decoder_params), raw


def decoder(path: str, dtype_name: str, latent_hw: tuple) -> Decoder:
  """Tweedie latents [N, h, w, C] -> images [N, H, W, 3] in [0, 1]: undo the normalisation,
  then the VAE decoder."""
  vae, params, raw = load(path, dtype_name)
  return diffusers_folder.vae_decoder(vae, params, raw, folder_lib.dtype(dtype_name), latent_hw)

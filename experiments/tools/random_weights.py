"""Tiny randomly initialised pretrained-format folders, for tests and offline demos.

They are written in exactly the formats of the real weights (diffusers' Stable Diffusion
layout with PyTorch safetensors; transformers' CLIP; a LAION-style aesthetic head as
safetensors), so that loading them exercises the same code path as loading real ones.
Parameters are drawn with numpy from the project's own abstract shapes (jax.eval_shape) and
saved under the PyTorch keys they are read from (`torch_state`); no torch, diffusers or
transformers is needed.

  write_stable_diffusion(path)   unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json
  write_clip(path)               a CLIPModel with tokenizer and preprocessor_config.json
  write_aesthetic_head(path, d)  layers.{0,2,4,6,7}.{weight,bias} of a d -> 1 linear head
"""

import json
import os
import re

import jax
import numpy as np

from models import autoencoder_kl
from models import tokenizers
from models.clip import config as clip_config
from models.clip import network as clip_network
from models.stable_diffusion import unet as unet_lib

TEXT_LENGTH = 16
# Module names that end in _N in PyTorch too (diffusers' TimestepEmbedding, T5's gated MLP);
# every other name_N is PyTorch's name.N (a list entry).
_UNDERSCORED = ('linear_1', 'linear_2', 'wi_0', 'wi_1')
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _random_like(shapes, seed: int):
  """Kernels ~ N(0, 1/fan_in), norm scales 1, biases 0 (numpy, no compilation)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('scale', 'gamma') or (name == 'weight' and len(leaf.shape) == 1):
      return np.ones(leaf.shape, np.float32)
    if name in ('bias', 'beta') or len(leaf.shape) == 1:
      return np.zeros(leaf.shape, np.float32)
    fan_in = int(np.prod(leaf.shape[:-1])) or 1
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

  return jax.tree.map_with_path(fill, shapes)


def torch_state(params) -> dict:
  """A Flax parameter tree of the project's ports -> {PyTorch key: numpy array}: the inverse of
  models/loading/torch_weights.assign (kernel -> weight, transposed back; scale -> weight)."""
  out = {}
  for path, leaf in jax.tree.flatten_with_path(params)[0]:
    names = [str(getattr(p, 'key', p)) for p in path]
    parts = [n if n in _UNDERSCORED else re.sub(r'_(\d+)$', r'.\1', n) for n in names[:-1]]
    value, last = np.asarray(leaf, np.float32), names[-1]
    if last == 'kernel':
      value = value.T if value.ndim == 2 else np.transpose(value, (3, 2, 0, 1))
      last = 'weight'
    elif last == 'scale':
      last = 'weight'
    out['.'.join(parts + [last])] = np.array(value, order='C')   # 0-d stays 0-d
  return out


def _save(folder: str, config: dict, tensors: dict, weights: str) -> None:
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump(config, f, indent=1)
  save_file(tensors, os.path.join(folder, weights), metadata={'format': 'pt'})   # as save_pretrained


def write_tokenizer(path: str, max_length: int = TEXT_LENGTH, specials_last: bool = False,
                    pad: str = '<|endoftext|>') -> int:
  """A byte-level CLIP tokenizer with no merges (every byte a token), in the files the hub
  publishes; returns its vocab size.

  specials_last: the start and end tokens take the last two ids, as in CLIP's real vocabulary,
  where the end token's id is the largest (OpenCLIP pools the text at the largest id,
  transformers' CLIPTextModel at the first end token: they agree only then)."""
  return tokenizers.write_clip_files(path, [], max_length, specials_last, pad)


def _text_config(vocab_size: int, width: int, architecture: str = 'CLIPTextModel') -> dict:
  return dict(architectures=[architecture], model_type='clip_text_model',
              vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
              num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=TEXT_LENGTH,
              projection_dim=width, hidden_act='quick_gelu', layer_norm_eps=1e-5,
              bos_token_id=0, eos_token_id=1, pad_token_id=1)


def write_text_encoder(path: str, vocab_size: int, width: int, seed: int) -> str:
  """A transformers CLIPTextModel folder (config.json, model.safetensors)."""
  raw = _text_config(vocab_size, width)
  shapes = clip_network.shapes(clip_config.from_dict(raw))
  _save(path, raw, torch_state(_random_like(shapes, seed)), 'model.safetensors')
  return path


UNET = dict(_class_name='UNet2DConditionModel', sample_size=8, in_channels=4, out_channels=4,
            down_block_types=['CrossAttnDownBlock2D', 'DownBlock2D'],
            up_block_types=['UpBlock2D', 'CrossAttnUpBlock2D'], block_out_channels=[64, 64],
            layers_per_block=1, attention_head_dim=8)
VAE = dict(_class_name='AutoencoderKL', in_channels=3, out_channels=3,
           down_block_types=['DownEncoderBlock2D'] * 2, up_block_types=['UpDecoderBlock2D'] * 2,
           block_out_channels=[8, 16], layers_per_block=1, latent_channels=4, norm_num_groups=8,
           sample_size=16, scaling_factor=0.18215)


def write_stable_diffusion(path: str, prediction_type: str = 'epsilon', seed: int = 0,
                           text_width: int = 32) -> str:
  """A tiny SD-layout folder: 16x16x3 images, 8x8x4 latents, a 2-block cross-attention U-Net.

  The U-Net has 64 channels: its GroupNorms have 32 groups, and with one channel per group they
  would erase the per-channel time embedding, leaving a model blind to the timestep.
  """
  os.makedirs(path, exist_ok=True)
  unet = dict(UNET, cross_attention_dim=text_width)
  shapes = unet_lib.shapes(unet_lib.UNetConfig.from_dict(unet))
  _save(os.path.join(path, 'unet'), unet, torch_state(_random_like(shapes, seed)),
        'diffusion_pytorch_model.safetensors')
  shapes = autoencoder_kl.shapes(autoencoder_kl.VAEConfig.from_dict(VAE))
  _save(os.path.join(path, 'vae'), VAE, torch_state(_random_like(shapes, seed + 1)),
        'diffusion_pytorch_model.safetensors')
  vocab_size = write_tokenizer(os.path.join(path, 'tokenizer'))
  write_text_encoder(os.path.join(path, 'text_encoder'), vocab_size, text_width, seed + 2)
  os.makedirs(os.path.join(path, 'scheduler'), exist_ok=True)
  with open(os.path.join(path, 'scheduler', 'scheduler_config.json'), 'w') as f:
    json.dump({'_class_name': 'DDIMScheduler', 'beta_start': 0.00085, 'beta_end': 0.012,
               'beta_schedule': 'scaled_linear', 'num_train_timesteps': 1000,
               'prediction_type': prediction_type, 'clip_sample': False,
               'set_alpha_to_one': False, 'steps_offset': 1}, f, indent=1)
  index = {'_class_name': 'StableDiffusionPipeline',
           'unet': ['diffusers', 'UNet2DConditionModel'],
           'vae': ['diffusers', 'AutoencoderKL'],
           'text_encoder': ['transformers', 'CLIPTextModel'],
           'tokenizer': ['transformers', 'CLIPTokenizer'],
           'scheduler': ['diffusers', 'DDIMScheduler']}
  with open(os.path.join(path, 'model_index.json'), 'w') as f:
    json.dump(index, f, indent=1)
  return path


def write_clip(path: str, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> str:
  """A tiny transformers CLIPModel folder (config.json, model.safetensors, tokenizer,
  preprocessor_config.json)."""
  os.makedirs(path, exist_ok=True)
  vocab_size = write_tokenizer(path)
  raw = dict(architectures=['CLIPModel'], model_type='clip', projection_dim=projection_dim,
             text_config=_text_config(vocab_size, 32),
             vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                num_hidden_layers=2, image_size=image_size, patch_size=8))
  params = _random_like(clip_network.shapes(clip_config.from_dict(raw)), seed)
  params['logit_scale'] = np.asarray(np.log(100.0), np.float32)
  _save(path, raw, torch_state(params), 'model.safetensors')
  with open(os.path.join(path, 'preprocessor_config.json'), 'w') as f:
    json.dump({'crop_size': {'height': image_size, 'width': image_size},
               'size': {'shortest_edge': image_size},
               'image_mean': CLIP_MEAN, 'image_std': CLIP_STD}, f, indent=1)
  return path


def write_aesthetic_head(path: str, input_dim: int, seed: int = 0) -> str:
  """A LAION-aesthetic-style head, d -> 1024 -> 128 -> 64 -> 16 -> 1, as safetensors."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  widths = (input_dim, 1024, 128, 64, 16, 1)
  tensors = {}
  for index, (n_in, n_out) in zip((0, 2, 4, 6, 7), zip(widths[:-1], widths[1:])):
    tensors[f'layers.{index}.weight'] = (rng.standard_normal((n_out, n_in)) /
                                         np.sqrt(n_in)).astype(np.float32)
    tensors[f'layers.{index}.bias'] = np.zeros((n_out,), np.float32)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  save_file(tensors, path)
  return path


def write_all(root: str) -> None:
  """root/stable_diffusion, root/clip and root/aesthetic.safetensors (what configs/sd.py:tiny
  reads)."""
  write_stable_diffusion(os.path.join(root, 'stable_diffusion'))
  write_clip(os.path.join(root, 'clip'))
  write_aesthetic_head(os.path.join(root, 'aesthetic.safetensors'), input_dim=16)


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  if len(sys.argv) != 2:
    sys.exit('usage: python -m experiments.tools.random_weights DIR')
  write_all(sys.argv[1])
  print(f'wrote tiny random Stable Diffusion, CLIP and aesthetic head under {sys.argv[1]}')

"""Tiny randomly initialised pretrained-format folders, for tests and offline demos.

They are written in exactly the formats of the real weights (diffusers' Stable Diffusion
layout; transformers' CLIP; a LAION-style aesthetic head as safetensors), so that loading them
exercises the same code path as loading real ones. Parameters are drawn with numpy from the
abstract shapes (jax.eval_shape), which avoids compiling the models' initialisers.

  write_stable_diffusion(path)   unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json
  write_clip(path)               a FlaxCLIPModel with tokenizer and preprocessor_config.json
  write_aesthetic_head(path, d)  layers.{0,2,4,6,7}.{weight,bias} of a d -> 1 linear head
"""

import json
import os

import jax
import numpy as np

from models.loading import hub

TEXT_LENGTH = 16


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


def write_tokenizer(path: str, max_length: int = TEXT_LENGTH, specials_last: bool = False) -> int:
  """A byte-level CLIP tokenizer with no merges (every byte a token); returns its vocab size.

  specials_last: the start and end tokens take the last two ids, as in CLIP's real vocabulary,
  where the end token's id is the largest (the Flax CLIP and OpenCLIP pool the text at the
  largest id, PyTorch's CLIPTextModel at the first end token: they agree only then)."""
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from transformers.models.clip.tokenization_clip import bytes_to_unicode  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  chars = list(bytes_to_unicode().values())
  specials = ['<|startoftext|>', '<|endoftext|>']
  vocab = chars + [c + '</w>' for c in chars]
  vocab = vocab + specials if specials_last else specials + vocab
  with open(os.path.join(path, 'vocab.json'), 'w') as f:
    json.dump({token: i for i, token in enumerate(vocab)}, f)
  with open(os.path.join(path, 'merges.txt'), 'w') as f:
    f.write('#version: 0.2\n')
  tokenizer = CLIPTokenizer(os.path.join(path, 'vocab.json'), os.path.join(path, 'merges.txt'),
                            model_max_length=max_length)
  tokenizer.save_pretrained(path)
  return len(vocab)


def _text_config(vocab_size: int, width: int):
  from transformers import CLIPTextConfig  # pylint: disable=g-import-not-at-top
  return CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
                        num_attention_heads=4, num_hidden_layers=2,
                        max_position_embeddings=TEXT_LENGTH, projection_dim=width,
                        bos_token_id=0, eos_token_id=1, pad_token_id=1)


def write_stable_diffusion(path: str, prediction_type: str = 'epsilon', seed: int = 0,
                           text_width: int = 32) -> str:
  """A tiny SD-layout folder: 16x16x3 images, 8x8x4 latents, a 2-block cross-attention U-Net.

  The U-Net has 64 channels: its GroupNorms have 32 groups, and with one channel per group they
  would erase the per-channel time embedding, leaving a model blind to the timestep.
  """
  hub.silence_flax_deprecation()
  from diffusers import FlaxAutoencoderKL  # pylint: disable=g-import-not-at-top
  from diffusers import FlaxDDIMScheduler  # pylint: disable=g-import-not-at-top
  from diffusers import FlaxUNet2DConditionModel  # pylint: disable=g-import-not-at-top
  from transformers import FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  unet = FlaxUNet2DConditionModel(
      sample_size=8, in_channels=4, out_channels=4,
      down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
      up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'), block_out_channels=(64, 64),
      layers_per_block=1, attention_head_dim=8, cross_attention_dim=text_width)
  unet_shapes = jax.eval_shape(unet.init_weights, jax.random.key(0))
  unet.save_pretrained(os.path.join(path, 'unet'), params=_random_like(unet_shapes, seed))
  vae = FlaxAutoencoderKL(
      in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
      up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(8, 16), layers_per_block=1,
      latent_channels=4, norm_num_groups=8, sample_size=16)
  vae_shapes = jax.eval_shape(vae.init_weights, jax.random.key(0))
  vae.save_pretrained(os.path.join(path, 'vae'), params=_random_like(vae_shapes, seed + 1))
  vocab_size = write_tokenizer(os.path.join(path, 'tokenizer'))
  text = FlaxCLIPTextModel(_text_config(vocab_size, text_width), _do_init=False)
  text.save_pretrained(os.path.join(path, 'text_encoder'),
                       params=_random_like(text.params_shape_tree, seed + 2))
  FlaxDDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                    num_train_timesteps=1000, prediction_type=prediction_type).save_config(
                        os.path.join(path, 'scheduler'))
  index = {'_class_name': 'FlaxStableDiffusionPipeline',
           'unet': ['diffusers', 'FlaxUNet2DConditionModel'],
           'vae': ['diffusers', 'FlaxAutoencoderKL'],
           'text_encoder': ['transformers', 'FlaxCLIPTextModel'],
           'tokenizer': ['transformers', 'CLIPTokenizer'],
           'scheduler': ['diffusers', 'FlaxDDIMScheduler']}
  with open(os.path.join(path, 'model_index.json'), 'w') as f:
    json.dump(index, f, indent=1)
  return path


def write_clip(path: str, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> str:
  """A tiny transformers CLIP folder (config, flax_model.msgpack, tokenizer, preprocessor)."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top
  from transformers import CLIPVisionConfig  # pylint: disable=g-import-not-at-top
  from transformers import FlaxCLIPModel  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  vocab_size = write_tokenizer(path)
  vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                            num_hidden_layers=2, image_size=image_size, patch_size=8)
  config = CLIPConfig(text_config=_text_config(vocab_size, 32).to_dict(),
                      vision_config=vision.to_dict(), projection_dim=projection_dim)
  model = FlaxCLIPModel(config, _do_init=False)
  params = _random_like(model.params_shape_tree, seed)
  params['logit_scale'] = np.asarray(np.log(100.0), np.float32)
  model.save_pretrained(path, params=params)
  with open(os.path.join(path, 'preprocessor_config.json'), 'w') as f:
    json.dump({'crop_size': {'height': image_size, 'width': image_size},
               'size': {'shortest_edge': image_size},
               'image_mean': [0.48145466, 0.4578275, 0.40821073],
               'image_std': [0.26862954, 0.26130258, 0.27577711]}, f, indent=1)
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

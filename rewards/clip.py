"""CLIP-based image rewards in Flax (the project's CLIP, models/clip/), differentiable and
jittable.

  clip_score  r(x) = cos(CLIP image embedding of x, CLIP text embedding of the prompt)
  pickscore   r(x) = exp(logit_scale) * that cosine, with PickScore's CLIP-H weights
              (Kirstain et al. 2023; yuvalkirstain/PickScore_v1 in transformers' format): what
              transformers' CLIPModel returns as logits_per_image
  hpsv2       r(x) = the cosine, with HPSv2's or HPSv2.1's OpenCLIP ViT-H-14 (Wu et al. 2023) and
              HPSv2's own preprocessing: the longer side resized to 224, the shorter padded
              with black, centred (its ResizeMaxSize); no logit scale, as HPSv2 scores
  aesthetic   r(x) = a LAION-style aesthetic head on the L2-normalised CLIP image embedding

A model is a transformers CLIP folder (PyTorch safetensors weights, config.json, the tokenizer's
vocab.json and merges.txt) or an OpenCLIP folder (models/clip/open_clip.py), local or a hub id.
Images are [N, H, W, C] with values in [0, 1]. Preprocessing follows each model's processor in
JAX: CLIP's resizes the shorter side (bicubic, antialiased) and centre-crops, HPSv2's resizes
the longer side and pads; both normalise by the model's mean and std (from
preprocessor_config.json or open_clip_config.json). The prompt's text embedding is computed
once on the host and travels in the condition as cond['reward_text'].

The aesthetic head is read from a .safetensors or .npz file with PyTorch Linear keys
`layers.{i}.weight` [out, in] and `layers.{i}.bias` (LAION's improved-aesthetic-predictor
layout; its released .pth converts with
`safetensors.torch.save_file(torch.load(pth), 'head.safetensors')`, or is read directly when
torch is installed). Its layers are applied in index order with no activations between them,
as in that predictor (its dropouts are inactive at inference).
"""

import functools
import json
import os
import re

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from models import clip
from models import tokenizers
from models.loading import hub
from rewards import base
from models.clip import open_clip

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HUB_FILES = (['*.json', '*.txt', open_clip.WEIGHTS, 'model.safetensors', '*.safetensors.index.json',
               'model-*-of-*.safetensors'])


@functools.lru_cache(maxsize=4)
def load(path: str):
  """(Clip module, params, tokenizer, preprocessing dict) of a CLIP folder or hub id:
  transformers' format (config.json, model.safetensors, sharded or not) or OpenCLIP's
  (open_clip_config.json). No random initialisation happens first."""
  folder = hub.resolve(path, what='CLIP model', allow_patterns=_HUB_FILES)
  if open_clip.is_folder(folder):
    return open_clip.load(folder)
  if not os.path.isfile(os.path.join(folder, 'config.json')):
    raise ValueError(f'{path!r} is not a transformers CLIP folder: it has no config.json.')
  module, params = clip.load(folder, 'CLIP model')
  if module.config.vision is None:
    raise ValueError(f'{path!r} is a {module.config.architecture}, not a CLIPModel: an image '
                     'reward needs both towers.')
  tokenizer = tokenizers.clip(folder, what='CLIP tokenizer')
  vocab = module.config.text.vocab_size
  if tokenizer.vocab_size > vocab:
    raise ValueError(f'the tokenizer of {path!r} has {tokenizer.vocab_size} tokens but its CLIP '
                     f'text encoder embeds only {vocab}: they do not belong together.')
  return module, params, tokenizer, _preprocessing(folder, module.config.vision.image_size)


def _preprocessing(folder: str, image_size: int) -> dict:
  config = {}
  path = os.path.join(folder, 'preprocessor_config.json')
  if os.path.isfile(path):
    with open(path) as f:
      config = json.load(f)
  size, crop = config.get('size', image_size), config.get('crop_size', image_size)
  size = size.get('shortest_edge', image_size) if isinstance(size, dict) else size
  crop = crop.get('height', image_size) if isinstance(crop, dict) else crop
  return {'size': int(size), 'crop': int(crop),
          'mean': tuple(config.get('image_mean', _CLIP_MEAN)),
          'std': tuple(config.get('image_std', _CLIP_STD)), 'mode': 'crop'}


def preprocess(images, prep: dict):
  """[N, H, W, C] in [0, 1] -> pixel values [N, 3, crop, crop] (NCHW, normalised).

  prep['mode']: 'crop' (CLIP's processor: the shorter side to `size`, centre crop), 'pad'
  (HPSv2's: the longer side to `crop`, the other padded with black on both sides, the odd
  pixel at the end) or 'squash' (both sides to `crop`)."""
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  n, h, w, _ = images.shape
  crop, mode = prep['crop'], prep.get('mode', 'crop')
  images = images.astype(jnp.float32)
  if mode == 'pad':
    scale = crop / max(h, w)
    nh, nw = min(crop, round(h * scale)), min(crop, round(w * scale))
    if (nh, nw) != (h, w):
      images = jax.image.resize(images, (n, nh, nw, 3), 'bicubic')
    top, left = (crop - nh) // 2, (crop - nw) // 2
    images = jnp.pad(images, ((0, 0), (top, crop - nh - top), (left, crop - nw - left), (0, 0)))
  elif mode == 'squash':
    images = jax.image.resize(images, (n, crop, crop, 3), 'bicubic')
  else:
    # CLIPImageProcessor: the shorter side becomes `size`, the longer int(size * long / short)
    size = prep['size']
    nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    nh, nw = max(crop, nh), max(crop, nw)
    images = jax.image.resize(images, (n, nh, nw, 3), 'bicubic')
    top, left = (nh - crop) // 2, (nw - crop) // 2
    images = images[:, top:top + crop, left:left + crop]
  images = (images - jnp.asarray(prep['mean'])) / jnp.asarray(prep['std'])
  return jnp.transpose(images, (0, 3, 1, 2))


def _normalise(v):
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def image_embedding(model, params, images, prep):
  """L2-normalised CLIP image embeddings [N, D]."""
  return _normalise(model.apply({'params': params}, preprocess(images, prep),
                                method=model.image_features))


def text_embedding(path: str, prompts) -> np.ndarray:
  """L2-normalised CLIP text embeddings [P, D] of a list of prompts (host side)."""
  model, params, tokenizer, _ = load(path)
  return np.asarray(_text_features_fn(model)(params, tokenizer(list(prompts))), np.float32)


@functools.lru_cache(maxsize=4)
def _text_features_fn(model):
  return jax.jit(lambda p, ids: _normalise(model.apply({'params': p}, ids,
                                                       method=model.text_features)))


def clip_score(path: str, mode: str = ''):
  """(fn(params, images, cond), params): cosine similarity to cond['reward_text'] [D];
  mode: a preprocessing mode in place of the model's own (see preprocess)."""
  model, params, _, prep = load(path)
  if mode:
    prep = dict(prep, mode=mode)

  def fn(params, images, cond):
    if not isinstance(cond, dict) or 'reward_text' not in cond:
      raise ValueError('this CLIP reward needs a prompt: cond["reward_text"].')
    emb = image_embedding(model, params, images, prep)
    return jnp.sum(emb * cond['reward_text'].astype(emb.dtype), axis=-1)

  return fn, params


def hpsv2(path: str):
  """(fn, params): HPSv2's score, the cosine on HPSv2's padded 224 x 224 input."""
  model, _, _, _ = load(path)
  if model.config.vision.hidden_size != 1280:
    logging.warning('reward hpsv2: %r is not a ViT-H-14 (width %d): it is scored as HPSv2 '
                    'scores, but HPSv2 and HPSv2.1 are ViT-H-14s.', path,
                    model.config.vision.hidden_size)
  return clip_score(path, mode='pad')


def pickscore(path: str):
  """(fn(params, images, cond), params): exp(logit_scale) times the cosine to
  cond['reward_text'] [D] (the model's own logit scale, as PickScore scores)."""
  cosine, params = clip_score(path)
  if 'logit_scale' not in params:
    raise ValueError(f'{path!r} has no logit_scale parameter: not a CLIPModel checkpoint.')

  def fn(params, images, cond):
    return jnp.exp(params['logit_scale']) * cosine(params, images, cond)

  return fn, params


def load_head(path: str) -> list:
  """[(W [in, out], b [out]), ...] of an aesthetic head file, in layer order."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'reward.head {path!r} does not exist.')
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    with hub.reading('aesthetic head', path):
      tensors = load_file(path)
  elif path.endswith('.npz'):
    with hub.reading('aesthetic head', path):
      tensors = dict(np.load(path, allow_pickle=False))
  elif path.endswith(('.pth', '.pt', '.bin')):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ValueError(f'{path!r} is a PyTorch file and torch is not installed; convert it to '
                       '.safetensors (see rewards/clip.py).') from None
    # weights_only: tensors and plain containers only, never arbitrary pickled objects.
    with hub.reading('aesthetic head', path):
      state = torch.load(path, map_location='cpu', weights_only=True)
      tensors = {k: v.float().numpy() for k, v in state.items()}
  else:
    raise ValueError(f'reward.head {path!r}: expected .safetensors, .npz or .pth.')
  indices = sorted({int(m.group(1)) for k in tensors
                    if (m := re.fullmatch(r'layers\.(\d+)\.weight', k))})
  if not indices:
    raise ValueError(f'{path!r} has no layers.N.weight tensors: not an aesthetic head.')
  layers = [(np.asarray(tensors[f'layers.{i}.weight'], np.float32).T,
             np.asarray(tensors[f'layers.{i}.bias'], np.float32)) for i in indices]
  for (w, _), (w_next, _) in zip(layers[:-1], layers[1:]):
    if w.shape[1] != w_next.shape[0]:
      raise ValueError(f'{path!r}: layer widths do not chain ({w.shape} then {w_next.shape}).')
  if layers[-1][0].shape[1] != 1:
    raise ValueError(f'{path!r}: the head must end in one output, not {layers[-1][0].shape[1]}.')
  return layers


def aesthetic(path: str, head_path: str):
  """(fn(params, images, cond), params): the head's score of the normalised image embedding."""
  model, clip_params, _, prep = load(path)
  layers = load_head(head_path)
  dim = model.config.projection_dim
  if layers[0][0].shape[0] != dim:
    raise ValueError(f'the aesthetic head {head_path!r} takes {layers[0][0].shape[0]}-dim '
                     f'embeddings but the CLIP model {path!r} makes {dim}-dim ones: they do not '
                     'belong together.')

  def fn(params, images, cond):
    del cond
    h = image_embedding(model, params['clip'], images, prep)
    for w, b in params['head']:
      h = h @ w + b
    return h[:, 0]

  return fn, {'clip': clip_params, 'head': [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]}


def _text_reward_builder(make):
  """build(cfg, shape, prompts) for a reward make(path) -> (fn, params) scored against the
  prompt's CLIP text embedding."""
  def build(cfg, shape, prompts=()) -> base.Reward:
    del shape, prompts
    path = base.required(cfg, 'model', cfg.name)
    fn, params = make(path)
    return base.Reward(cfg.name, fn, params,
                       encode_text=lambda texts: text_embedding(path, texts))
  return build


build_clip_score = _text_reward_builder(clip_score)
build_pickscore = _text_reward_builder(pickscore)
build_hpsv2 = _text_reward_builder(hpsv2)


def build_aesthetic(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  fn, params = aesthetic(base.required(cfg, 'model', cfg.name),
                         base.required(cfg, 'head', cfg.name))
  return base.Reward(cfg.name, fn, params)


# model: a CLIP folder or hub id (transformers' or OpenCLIP's); head: the aesthetic head's file.
_FIELDS = dict(model='', head='')
REWARDS = (
    base.RewardKind(build_clip_score, _FIELDS, images=True, order=30, name='clip_score'),
    base.RewardKind(build_aesthetic, _FIELDS, images=True, order=31, name='aesthetic'),
    base.RewardKind(build_pickscore, _FIELDS, images=True, order=32, name='pickscore'),
    base.RewardKind(build_hpsv2, _FIELDS, images=True, order=33, name='hpsv2'),
)

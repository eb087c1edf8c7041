"""OpenCLIP checkpoints (HPSv2, LAION's CLIP-H) in the project's CLIP (models/clip/), without
torch.

An OpenCLIP folder holds
  open_clip_config.json        {"model_cfg": OpenCLIP's model config, "preprocess_cfg": {...}}
  open_clip_model.safetensors  the state dict under OpenCLIP's own keys
  vocab.json, merges.txt       the BPE tokenizer in transformers' CLIPTokenizer format
which is the layout of LAION's hub repositories plus the tokenizer files. HPSv2 and HPSv2.1
are published only as PyTorch pickles; `python -m experiments.tools.convert_open_clip` turns one into
such a folder in an environment with torch and open_clip (docs/rewards.md). This module only
reads safetensors.

OpenCLIP's keys are renamed to transformers' PyTorch CLIP keys (the fused attention
projection split into q, k, v; `proj` and `text_projection` transposed), which the port's
parameters are named after. Every tensor must land in exactly one parameter; an architecture
feature the port does not have (layer scale, attentional pooling, a timm or HF tower, ...) is
refused by name. Text pooling: OpenCLIP takes the state at the largest token id (the
end-of-text token of a CLIP vocabulary, whose special tokens come last), and so does the
port for these models.
"""

import json
import os
import re

import numpy as np

from models import clip
from models import tokenizers
from models.clip import config as config_lib
from models.clip import network
from models.loading import hub
from samplers.ground import checks

CONFIG = 'open_clip_config.json'
WEIGHTS = 'open_clip_model.safetensors'
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)
# Model-config fields the Flax CLIP cannot express, with the value that it can.
_VISION_DEFAULTS = dict(ls_init_value=None, attentional_pool=False,
                        global_average_pool=False, no_ln_pre=False, final_ln_after_pool=False,
                        pool_type='tok', timm_model_name=None,
                        act_kwargs=None, norm_kwargs=None, pos_embed_type='learnable')
_TEXT_DEFAULTS = dict(ls_init_value=None, hf_model_name=None, proj_bias=False,
                      pool_type='argmax', embed_cls=False, no_causal_mask=False,
                      proj_type='linear', act_kwargs=None, norm_kwargs=None)


def is_folder(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, CONFIG))


def read_config(folder: str) -> dict:
  path = os.path.join(folder, CONFIG)
  with hub.reading('OpenCLIP config', path):
    with open(path) as f:
      config = json.load(f)
  if not isinstance(config, dict) or not isinstance(config.get('model_cfg'), dict):
    raise ValueError(f'{path} has no "model_cfg" object: not an OpenCLIP config.')
  return config


def clip_config(model_cfg: dict) -> config_lib.ClipConfig:
  """The ClipConfig of an OpenCLIP model config (a ValueError for what it lacks)."""
  vision, text = dict(model_cfg.get('vision_cfg', {})), dict(model_cfg.get('text_cfg', {}))
  if model_cfg.get('custom_text') and text.get('hf_model_name'):
    raise ValueError('OpenCLIP models with a transformers text tower are not supported.')
  for where, cfg, defaults in (('vision_cfg', vision, _VISION_DEFAULTS),
                               ('text_cfg', text, _TEXT_DEFAULTS)):
    for field, ok in defaults.items():
      value = cfg.get(field)
      if value is None or value == ok or (ok is None and value in ({}, [])):
        continue
      raise ValueError(f'OpenCLIP {where}.{field} = {value!r} is not supported by the '
                       'project\'s CLIP (models/clip/open_clip.py).')
  if isinstance(vision.get('layers', 12), (list, tuple)):
    raise ValueError('OpenCLIP ResNet image towers are not supported; only ViTs.')
  act = 'quick_gelu' if model_cfg.get('quick_gelu') else 'gelu'
  image_size = vision.get('image_size', 224)
  if isinstance(image_size, (list, tuple)):
    if len(set(image_size)) != 1:
      raise ValueError(f'OpenCLIP vision_cfg.image_size = {image_size!r}: only square images '
                       'are supported.')
    image_size = image_size[0]
  embed_dim = _positive('', 'embed_dim', model_cfg.get('embed_dim'))
  width = _positive('vision_cfg.', 'width', vision.get('width', 768))
  head_width = _positive('vision_cfg.', 'head_width', vision.get('head_width', 64))
  if width % head_width:
    raise ValueError(f'OpenCLIP vision_cfg.width = {width} is not a multiple of its '
                     f'head_width = {head_width}.')
  text_width = _positive('text_cfg.', 'width', text.get('width', 512))
  heads = _positive('text_cfg.', 'heads', text.get('heads', 8))
  if text_width % heads:
    raise ValueError(f'OpenCLIP text_cfg.width = {text_width} is not a multiple of its '
                     f'heads = {heads}.')
  image_size = _positive('vision_cfg.', 'image_size', image_size)
  patch_size = _positive('vision_cfg.', 'patch_size', vision.get('patch_size', 16))
  if image_size % patch_size:
    raise ValueError(f'OpenCLIP vision_cfg.image_size = {image_size} is not a multiple of its '
                     f'patch_size = {patch_size}.')
  text_cfg = config_lib.TextConfig(
      vocab_size=_positive('text_cfg.', 'vocab_size', text.get('vocab_size', 49408)),
      hidden_size=text_width, intermediate_size=int(text_width * _ratio('text_cfg.', text)),
      num_attention_heads=heads,
      num_hidden_layers=_positive('text_cfg.', 'layers', text.get('layers', 12)),
      max_position_embeddings=_positive('text_cfg.', 'context_length',
                                        text.get('context_length', 77)),
      hidden_act=act, layer_norm_eps=1e-5, projection_dim=embed_dim, pool_at_largest_id=True)
  vision_cfg = config_lib.VisionConfig(
      hidden_size=width, intermediate_size=int(width * _ratio('vision_cfg.', vision)),
      num_attention_heads=width // head_width,
      num_hidden_layers=_positive('vision_cfg.', 'layers', vision.get('layers', 12)),
      image_size=image_size, patch_size=patch_size, hidden_act=act, layer_norm_eps=1e-5)
  return config_lib.ClipConfig('CLIPModel', text_cfg, vision_cfg, embed_dim)


def _positive(where: str, field: str, value) -> int:
  """An OpenCLIP config size: a positive integer, or a ValueError naming the field."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
      or int(value) < 1:
    what = 'missing' if value is None else repr(value)
    raise ValueError(f'OpenCLIP model_cfg.{where}{field} is {what}; it must be a positive '
                     'integer.')
  return int(value)


def _ratio(where: str, cfg: dict) -> float:
  value = cfg.get('mlp_ratio', 4.0)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f'OpenCLIP model_cfg.{where}mlp_ratio is {value!r}; it must be a positive '
                     'number.')
  return float(value)


_BLOCK = {'ln_1': 'layer_norm1', 'ln_2': 'layer_norm2', 'attn.out_proj': 'self_attn.out_proj',
          'mlp.c_fc': 'mlp.fc1', 'mlp.c_proj': 'mlp.fc2'}
_TOP = {'token_embedding.weight': 'text_model.embeddings.token_embedding.weight',
        'positional_embedding': 'text_model.embeddings.position_embedding.weight',
        'ln_final.weight': 'text_model.final_layer_norm.weight',
        'ln_final.bias': 'text_model.final_layer_norm.bias',
        'logit_scale': 'logit_scale',
        'visual.class_embedding': 'vision_model.embeddings.class_embedding',
        'visual.positional_embedding': 'vision_model.embeddings.position_embedding.weight',
        'visual.conv1.weight': 'vision_model.embeddings.patch_embedding.weight',
        'visual.ln_pre.weight': 'vision_model.pre_layrnorm.weight',
        'visual.ln_pre.bias': 'vision_model.pre_layrnorm.bias',
        'visual.ln_post.weight': 'vision_model.post_layernorm.weight',
        'visual.ln_post.bias': 'vision_model.post_layernorm.bias'}
_IGNORED = ('attn_mask',)   # OpenCLIP's causal-mask buffer, saved by some versions


def torch_clip_state(tensors: dict) -> dict:
  """OpenCLIP's state dict -> transformers' PyTorch CLIPModel state dict (numpy, float32)."""
  out = {}
  for key, value in tensors.items():
    value = np.asarray(value, np.float32)
    key = key[len('module.'):] if key.startswith('module.') else key
    key = key[len('text.'):] if key.startswith('text.') else key   # CustomTextCLIP's prefix
    if key in _IGNORED:
      continue
    if key in _TOP:
      out[_TOP[key]] = value
      continue
    if key == 'text_projection':
      out['text_projection.weight'] = value.T
      continue
    if key == 'visual.proj':
      out['visual_projection.weight'] = value.T
      continue
    m = re.fullmatch(r'(visual\.)?transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)', key)
    if m is None:
      m_in = re.fullmatch(r'(visual\.)?transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)',
                          key)
      if m_in is None:
        raise ValueError(f'the OpenCLIP tensor {key!r} has no place in the CLIP port.')
      tower = 'vision_model' if m_in.group(1) else 'text_model'
      prefix = f'{tower}.encoder.layers.{m_in.group(2)}.self_attn'
      for name, part in zip(('q_proj', 'k_proj', 'v_proj'), np.split(value, 3, axis=0)):
        out[f'{prefix}.{name}.{m_in.group(3)}'] = part
      continue
    tower = 'vision_model' if m.group(1) else 'text_model'
    if m.group(3) not in _BLOCK:
      raise ValueError(f'the OpenCLIP tensor {key!r} has no place in the CLIP port.')
    out[f'{tower}.encoder.layers.{m.group(2)}.{_BLOCK[m.group(3)]}.{m.group(4)}'] = value
  return out


def load(folder: str):
  """(Clip module, params, tokenizer, preprocessing) of an OpenCLIP folder, as rewards/clip.py's
  load returns them for a transformers folder."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  config = read_config(folder)
  weights = os.path.join(folder, WEIGHTS)
  if not os.path.isfile(weights):
    raise FileNotFoundError(f'the OpenCLIP folder {folder!r} has no {WEIGHTS}; convert a PyTorch '
                            'checkpoint with python -m experiments.tools.convert_open_clip.')
  if not os.path.isfile(os.path.join(folder, 'vocab.json')):
    raise ValueError(f'the OpenCLIP folder {folder!r} has no tokenizer (vocab.json, merges.txt); '
                     'python -m experiments.tools.convert_open_clip writes them.')
  clip_cfg = clip_config(config['model_cfg'])
  tokenizer = tokenizers.clip(folder, clip_cfg.text.max_position_embeddings, 'CLIP tokenizer')
  if tokenizer.vocab_size > clip_cfg.text.vocab_size:
    raise ValueError(f'the tokenizer of {folder!r} has {tokenizer.vocab_size} tokens but its '
                     f'OpenCLIP text tower embeds only {clip_cfg.text.vocab_size}: they do not '
                     'belong together.')
  with hub.reading('OpenCLIP weights', weights):
    tensors = load_file(weights)
  bad = checks.first_non_finite(tensors, flat=True)
  if bad:
    raise ValueError(f'the OpenCLIP tensor {bad!r} in {weights} holds NaN or inf: the file is '
                     'damaged or was saved from a diverged model.')
  params = clip.from_tensors(clip_cfg, torch_clip_state(tensors), 'OpenCLIP weights')
  prep_cfg = config.get('preprocess_cfg', {})
  size = clip_cfg.vision.image_size
  prep = {'size': size, 'crop': size, 'mean': tuple(prep_cfg.get('mean', _MEAN)),
          'std': tuple(prep_cfg.get('std', _STD)),
          'mode': {'longest': 'pad', 'squash': 'squash'}.get(prep_cfg.get('resize_mode'), 'crop')}
  return network.Clip(clip_cfg), params, tokenizer, prep

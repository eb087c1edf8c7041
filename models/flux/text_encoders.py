"""FLUX.1's text encoders: the project's CLIP-L (its pooled output, models/clip/) and T5 encoder
(its states, models/t5.py), read from the folder's PyTorch safetensors without torch; prompts
encoded once per process.

The encoders are loaded only for prompts not yet encoded and dropped afterwards, so T5 never
shares memory with the transformer unless model.keep_text_encoders is set.
"""

import functools
import os

import numpy as np

from models import clip
from models import diffusers_folder
from models import t5
from models import tokenizers
from models.flux import folder as folder_lib

_PROMPT_CACHE = {}


def text_length(cfg) -> int:
  length = int(cfg.get('max_sequence_length', 256))
  if not 1 <= length <= 512:
    raise ValueError(f'model.max_sequence_length must be in [1, 512] (T5 tokens), got {length}.')
  return length


def load(path: str, dtype_name: str, length: int):
  """(CLIP tokenizer, CLIP module, its params, T5 tokenizer, T5 module, its params)."""
  clip_tok = tokenizers.clip(os.path.join(path, 'tokenizer'), what='FLUX tokenizer')
  t5_tok = tokenizers.t5(os.path.join(path, 'tokenizer_2'), length, what='FLUX tokenizer_2')
  clip_module, clip_params = clip.load(os.path.join(path, 'text_encoder'),
                                       'FLUX text encoder (CLIP)', dtype_name)
  t5_module, t5_params = t5.load(os.path.join(path, 'text_encoder_2'),
                                 'FLUX text encoder 2 (T5)', dtype_name)
  return clip_tok, clip_module, clip_params, t5_tok, t5_module, t5_params


_kept = functools.lru_cache(maxsize=1)(load)


def _encode(encoders, path: str, prompts: tuple):
  """(T5 states [P, L, D_t5], CLIP pooled [P, D_clip]) in float32."""
  clip_tok, clip_module, clip_params, t5_tok, t5_module, t5_params = encoders
  ids = clip_tok(list(prompts))
  diffusers_folder.check_vocab(ids, clip_module.config.text.vocab_size, path, 'tokenizer',
                               'text_encoder')
  out = clip_module.apply({'params': clip_params}, ids, method=clip_module.encode_text)
  pooled = np.asarray(out['pooled'], np.float32)
  ids = t5_tok(list(prompts))
  diffusers_folder.check_vocab(ids, t5_module.config.vocab_size, path, 'tokenizer_2',
                               'text_encoder_2')
  states = np.asarray(t5_module.apply({'params': t5_params}, ids), np.float32)
  return states, pooled


def encode_prompts(cfg, prompts) -> dict:
  """{'text': T5 states [P, L, D_t5], 'pooled': CLIP pooled [P, D_clip]}, float32 numpy.

  Each prompt is encoded once per process (cached by folder, length and dtype); the encoders
  are loaded only for prompts not yet cached and released afterwards."""
  path = folder_lib.resolve(cfg)
  length, dtype_name = text_length(cfg), folder_lib.dtype_name(cfg)
  states, pooled = diffusers_folder.encode_cached(
      _PROMPT_CACHE, cfg, path, dtype_name, length, load, _kept, _encode, prompts)
  return {'text': states, 'pooled': pooled}

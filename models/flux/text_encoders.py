"""FLUX.1's text encoders: transformers' Flax CLIP-L (its pooled output) and T5 (its states),
read from the folder's PyTorch safetensors without torch; prompts encoded once per process.

The encoders are loaded only for prompts not yet encoded and dropped afterwards, so T5 never
shares memory with the transformer unless model.keep_text_encoders is set.
"""

import functools
import os

import jax.numpy as jnp
import numpy as np

from models import diffusers_folder
from models.flux import folder as folder_lib
from models.loading import hub
from models.loading import torch_weights

_PROMPT_CACHE = {}


def text_length(cfg) -> int:
  length = int(cfg.get('max_sequence_length', 256))
  if not 1 <= length <= 512:
    raise ValueError(f'model.max_sequence_length must be in [1, 512] (T5 tokens), got {length}.')
  return length


def _t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
  """T5's relative-position bucket (exact up to num_buckets / 4 apart, then logarithmic up to
  max_distance). transformers 4.57's Flax T5 computes it with jnp.clip(a_max=...), which
  jax 0.10 removed; this is the same map with jnp.minimum."""
  buckets = 0
  if bidirectional:
    num_buckets //= 2
    buckets = (relative_position > 0) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  exact = num_buckets // 2
  far = exact + (jnp.log(jnp.maximum(distance, 1) / exact) / jnp.log(max_distance / exact) *
                 (num_buckets - exact))
  far = jnp.minimum(far, num_buckets - 1)
  return (buckets + jnp.where(distance < exact, distance, far)).astype('i4')


def _patch_t5() -> None:
  from transformers.models.t5 import modeling_flax_t5  # pylint: disable=g-import-not-at-top
  modeling_flax_t5.FlaxT5Attention._relative_position_bucket = staticmethod(_t5_bucket)  # pylint: disable=protected-access


def _text_encoder(path: str, sub: str, what: str, cls_name: str, dtype):
  """A transformers Flax text model (no weights initialised) and its params converted from
  the folder's PyTorch safetensors; every parameter must be filled."""
  return torch_weights.flax_transformers_model(os.path.join(path, sub), cls_name, f'FLUX {what}',
                                               dtype)


def pooled_output(hidden, ids, eos_token_id: int):
  """CLIP's pooled output as transformers' PyTorch CLIPTextModel takes it: the state at the
  first end-of-text token (at the largest id for configs that say eos_token_id = 2)."""
  if eos_token_id == 2:
    index = jnp.argmax(ids, axis=-1)
  else:
    index = jnp.argmax(ids == eos_token_id, axis=-1)
  return hidden[jnp.arange(hidden.shape[0]), index]


def load(path: str, dtype_name: str):
  """(CLIP tokenizer, CLIP, its params, T5 tokenizer, T5, its params) of the folder."""
  # The tokenizers' own classes, never AutoTokenizer: a folder's tokenizer_config.json may
  # name code of its own (auto_map), which the project never runs or offers to run.
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from transformers import T5TokenizerFast  # pylint: disable=g-import-not-at-top
  dtype = folder_lib.dtype(dtype_name)
  with hub.reading('FLUX tokenizer', os.path.join(path, 'tokenizer')):
    clip_tok = CLIPTokenizer.from_pretrained(os.path.join(path, 'tokenizer'))
  with hub.reading('FLUX tokenizer_2', os.path.join(path, 'tokenizer_2')):
    t5_tok = T5TokenizerFast.from_pretrained(os.path.join(path, 'tokenizer_2'))
  clip, clip_params = _text_encoder(path, 'text_encoder', 'text encoder (CLIP)',
                                    'FlaxCLIPTextModel', dtype)
  _patch_t5()
  t5, t5_params = _text_encoder(path, 'text_encoder_2', 'text encoder 2 (T5)',
                                'FlaxT5EncoderModel', dtype)
  return clip_tok, clip, clip_params, t5_tok, t5, t5_params


_kept = functools.lru_cache(maxsize=1)(load)


def _encode(encoders, path: str, prompts: tuple, length: int):
  """(T5 states [P, L, D_t5], CLIP pooled [P, D_clip]) in float32."""
  clip_tok, clip, clip_params, t5_tok, t5, t5_params = encoders
  ids = clip_tok(list(prompts), padding='max_length', max_length=clip_tok.model_max_length,
                 truncation=True, return_tensors='np').input_ids
  diffusers_folder.check_vocab(ids, clip.config.vocab_size, path, 'tokenizer', 'text_encoder')
  hidden = clip(ids, params=clip_params).last_hidden_state
  pooled = np.asarray(pooled_output(hidden, jnp.asarray(ids), clip.config.eos_token_id),
                      np.float32)
  ids = t5_tok(list(prompts), padding='max_length', max_length=length, truncation=True,
               return_tensors='np').input_ids
  diffusers_folder.check_vocab(ids, t5.config.vocab_size, path, 'tokenizer_2', 'text_encoder_2')
  states = np.asarray(t5(ids, params=t5_params).last_hidden_state, np.float32)
  return states, pooled


def encode_prompts(cfg, prompts) -> dict:
  """{'text': T5 states [P, L, D_t5], 'pooled': CLIP pooled [P, D_clip]}, float32 numpy.

  Each prompt is encoded once per process (cached by folder, length and dtype); the encoders
  are loaded only for prompts not yet cached and released afterwards."""
  path = folder_lib.resolve(cfg)
  length, dtype_name = text_length(cfg), folder_lib.dtype_name(cfg)
  key = lambda p: (os.path.abspath(path), length, dtype_name, p)
  todo = tuple(dict.fromkeys(p for p in prompts if key(p) not in _PROMPT_CACHE))
  if todo:
    keep = bool(cfg.get('keep_text_encoders', False))
    encoders = (_kept if keep else load)(path, dtype_name)
    states, pooled = _encode(encoders, path, todo, length)
    del encoders   # unless kept, the encoders' memory goes back now
    for i, p in enumerate(todo):
      _PROMPT_CACHE[key(p)] = (states[i], pooled[i])
  rows = [_PROMPT_CACHE[key(p)] for p in prompts]
  return {'text': np.stack([r[0] for r in rows]), 'pooled': np.stack([r[1] for r in rows])}

"""Stable Diffusion's prompt encoding, as diffusers' pipelines do it.

  SD 1.x/2.x  the CLIP text encoder's last hidden state (final-normed) [P, 77, D]
  SDXL        both encoders' penultimate hidden states, concatenated [P, 77, D1 + D2], and the
              second encoder's projected pooled text [P, D_pool] (its text_embeds)

Tokenizers (tokenizer/, tokenizer_2/) are CLIP's BPE read by models/tokenizers.py.
"""

import functools
import os

import jax
import numpy as np

from models import clip
from models import diffusers_folder
from models import tokenizers


@functools.lru_cache(maxsize=4)
def encoders(path: str, dtype_name: str, xl: bool) -> tuple:
  """((tokenizer, Clip module, params), ...) of text_encoder (and text_encoder_2 for SDXL)."""
  out = []
  for suffix in ('', '_2') if xl else ('',):
    sub = os.path.join(path, f'text_encoder{suffix}')
    tok = tokenizers.clip(os.path.join(path, f'tokenizer{suffix}'),
                          what=f'Stable Diffusion tokenizer{suffix}')
    module, params = clip.load(sub, f'Stable Diffusion text_encoder{suffix}', dtype_name)
    out.append((tok, module, params))
  if xl and not out[1][1].config.text_projection:
    raise ValueError(f'the SDXL text_encoder_2 of {path!r} is a CLIPTextModel; SDXL pools text '
                     'through a CLIPTextModelWithProjection.')
  return tuple(out)


@functools.lru_cache(maxsize=8)
def _encode_fn(module):
  return jax.jit(lambda p, ids: module.apply({'params': p}, ids, method=module.encode_text))


def encode(path: str, dtype_name: str, xl: bool, prompts) -> dict:
  """{'text': [P, L, D]} (SD) or {'text': [P, L, D1 + D2], 'pooled': [P, D_pool]} (SDXL),
  float32 numpy."""
  states, pooled = [], None
  for suffix, (tok, module, params) in zip(('', '_2'), encoders(path, dtype_name, xl)):
    ids = tok(list(prompts))
    diffusers_folder.check_vocab(ids, module.config.text.vocab_size, path, f'tokenizer{suffix}',
                                 f'text_encoder{suffix}')
    out = _encode_fn(module)(params, ids)
    states.append(out['hidden_states'][-2] if xl else out['last_hidden_state'])
    if xl and 'text_embeds' in out:   # the second encoder's
      pooled = out['text_embeds']
  result = {'text': np.concatenate([np.asarray(s, np.float32) for s in states], -1)}
  if xl:
    result['pooled'] = np.asarray(pooled, np.float32)
  return result

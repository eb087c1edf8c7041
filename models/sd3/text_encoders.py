"""Stable Diffusion 3's three text encoders, as StableDiffusion3Pipeline.encode_prompt uses them:
CLIP-L (text_encoder) and OpenCLIP bigG (text_encoder_2), both CLIPTextModelWithProjection, and
the T5 encoder (text_encoder_3), in the project's ports (models/clip/, models/t5.py).

  text    [P, 77 + L, D_t5]: the two CLIPs' penultimate hidden states, concatenated along
          features (768 + 1280 = 2048 for the real ones) and zero-padded to T5's width, then
          T5's L = model.max_sequence_length states, along the sequence
  pooled  [P, P_l + P_g]: both CLIPs' projected pooled outputs (their text_embeds)

The encoders are loaded only for prompts not yet encoded and dropped afterwards (so T5-XXL
never shares memory with the transformer unless model.keep_text_encoders is set); each prompt
is encoded once per process.
"""

import functools
import os

import numpy as np

from models import clip
from models import diffusers_folder
from models import t5
from models import tokenizers
from models.flux import text_encoders as flux_text
from models.sd3 import folder as folder_lib

CLIPS = (('tokenizer', 'text_encoder', 'CLIP-L'), ('tokenizer_2', 'text_encoder_2', 'CLIP-G'))
_PROMPT_CACHE = {}
text_length = flux_text.text_length


def load(path: str, dtype_name: str, length: int):
  """((CLIP tokenizer, module, params) x 2, (T5 tokenizer, module, params))."""
  out = []
  for tok_name, enc_name, label in CLIPS:
    tok = tokenizers.clip(os.path.join(path, tok_name), what=f'SD3 {tok_name}')
    module, params = clip.load(os.path.join(path, enc_name), f'SD3 {enc_name} ({label})',
                               dtype_name)
    if not module.config.text_projection:
      raise ValueError(f'the SD3 {enc_name} of {path!r} is a CLIPTextModel; SD3 pools text '
                       'through a CLIPTextModelWithProjection.')
    out.append((tok, module, params))
  tok = tokenizers.t5(os.path.join(path, 'tokenizer_3'), length, what='SD3 tokenizer_3')
  module, params = t5.load(os.path.join(path, 'text_encoder_3'), 'SD3 text_encoder_3 (T5)',
                           dtype_name)
  widths = sum(m.config.text.hidden_size for _, m, _ in out)
  if widths > module.config.d_model:
    raise ValueError(f'the SD3 CLIP encoders of {path!r} give {widths}-dim states together, '
                     f'wider than text_encoder_3\'s (T5) {module.config.d_model}: SD3 pads '
                     'them to the T5 width, so they do not belong together.')
  return tuple(out) + ((tok, module, params),)


_kept = functools.lru_cache(maxsize=1)(load)


def _encode(encoders, path: str, prompts: tuple):
  """(text [P, 77 + L, D_t5], pooled [P, P_l + P_g]) in float32."""
  states, pooled = [], []
  for (tok_name, enc_name, _), (tok, module, params) in zip(CLIPS, encoders[:2]):
    ids = tok(list(prompts))
    diffusers_folder.check_vocab(ids, module.config.text.vocab_size, path, tok_name, enc_name)
    out = module.apply({'params': params}, ids, method=module.encode_text)
    states.append(np.asarray(out['hidden_states'][-2], np.float32))
    pooled.append(np.asarray(out['text_embeds'], np.float32))
  tok, module, params = encoders[2]
  ids = tok(list(prompts))
  diffusers_folder.check_vocab(ids, module.config.vocab_size, path, 'tokenizer_3',
                               'text_encoder_3')
  t5_states = np.asarray(module.apply({'params': params}, ids), np.float32)
  clip_states = np.concatenate(states, -1)
  pad = t5_states.shape[-1] - clip_states.shape[-1]
  clip_states = np.pad(clip_states, ((0, 0), (0, 0), (0, pad)))
  return np.concatenate([clip_states, t5_states], 1), np.concatenate(pooled, -1)


def encode_prompts(cfg, prompts) -> dict:
  """{'text': [P, 77 + L, D_t5], 'pooled': [P, P_l + P_g]}, float32 numpy, each prompt
  encoded once per process (cached by folder, length and dtype)."""
  path = folder_lib.resolve(cfg)
  length, dtype_name = text_length(cfg), folder_lib.dtype_name(cfg)
  text, pooled = diffusers_folder.encode_cached(
      _PROMPT_CACHE, cfg, path, dtype_name, length, load, _kept, _encode, prompts)
  return {'text': text, 'pooled': pooled}

"""Tokenizers read from the files the hub publishes, with the `tokenizers` library.

  clip(folder)             CLIP's byte-level BPE from vocab.json and merges.txt (the files of
                           SD's, FLUX's and CLIP models' tokenizer folders), built as
                           transformers' CLIPTokenizerFast builds it: NFC, whitespace runs to
                           one space, lower case; CLIP's word pattern; byte-level BPE with
                           `</w>` ending each word; start and end tokens around the text.
  t5(folder)               a tokenizer.json (FLUX's T5 tokenizer_2 folder) as published.

Both turn a list of prompts into ids [P, L] (int32): truncated to L with the end token kept,
then padded to L with the folder's pad token, as the pipelines call them
(padding='max_length', truncation=True).
"""

import dataclasses
import json
import os

import numpy as np

from models.loading import hub

# CLIP's word pattern (OpenAI's simple_tokenizer, less its two special tokens, which are added
# tokens here), case-insensitive through the lower-casing that precedes it.
_CLIP_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """A `tokenizers.Tokenizer` set to truncate and pad to max_length."""
  backend: object
  max_length: int
  vocab_size: int

  def __call__(self, prompts) -> np.ndarray:
    if isinstance(prompts, str):
      raise ValueError('tokenizer: give a list of prompts, not one string.')
    encodings = self.backend.encode_batch([str(p) for p in prompts])
    return np.asarray([e.ids for e in encodings], np.int32).reshape(len(encodings),
                                                                    self.max_length)


def _read_json(path: str, what: str, default=None):
  """A JSON file of the tokenizer folder; `default` where it is absent and one is given."""
  if default is not None and not os.path.isfile(path):
    return default
  return hub.read_json(path, what)


def _token(value):
  """A special token as tokenizer_config.json or special_tokens_map.json write it."""
  return value.get('content') if isinstance(value, dict) else value


def _settings(folder: str, what: str) -> dict:
  """tokenizer_config.json overlaid by special_tokens_map.json (either may be absent)."""
  settings = dict(_read_json(os.path.join(folder, 'tokenizer_config.json'), what, {}))
  for key, value in _read_json(os.path.join(folder, 'special_tokens_map.json'), what, {}).items():
    settings[key] = value
  return settings


def _max_length(settings: dict, max_length, what: str) -> int:
  length = max_length or settings.get('model_max_length')
  if not isinstance(length, int) or not 1 <= length <= 100_000:
    raise ValueError(f'the {what} gives no usable model_max_length ({length!r}); pass the '
                     'length.')
  return length


def _finish(tok, length: int, pad: str, what: str) -> Tokenizer:
  pad_id = tok.token_to_id(pad)
  if pad_id is None:
    raise ValueError(f'the {what} pads with {pad!r}, which is not in its vocabulary.')
  tok.enable_truncation(max_length=length)
  tok.enable_padding(length=length, pad_id=pad_id, pad_token=pad)
  return Tokenizer(tok, length, tok.get_vocab_size(with_added_tokens=True))


def clip(folder: str, max_length: int = 0, what: str = 'CLIP tokenizer') -> Tokenizer:
  """CLIP's tokenizer of a folder holding vocab.json and merges.txt."""
  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, Regex
  from tokenizers import AddedToken
  from tokenizers import Tokenizer as Backend
  # pylint: enable=g-import-not-at-top
  vocab = _read_json(os.path.join(folder, 'vocab.json'), what)
  merges_path = os.path.join(folder, 'merges.txt')
  if not os.path.isfile(merges_path):
    raise ValueError(f'the {what} has no merges.txt at {merges_path!r}.')
  with open(merges_path, encoding='utf-8') as f:
    lines = [line.rstrip('\n') for line in f]
  merges = [tuple(line.split(' ')) for line in lines
            if line and not line.startswith('#version')]
  bad = next((m for m in merges if len(m) != 2), None)
  if bad is not None:
    raise ValueError(f'{merges_path} has the line {" ".join(bad)!r}, not a pair of symbols.')
  settings = _settings(folder, what)
  bos = _token(settings.get('bos_token')) or '<|startoftext|>'
  eos = _token(settings.get('eos_token')) or '<|endoftext|>'
  unk = _token(settings.get('unk_token')) or eos
  pad = _token(settings.get('pad_token')) or eos
  for name, token in (('start', bos), ('end', eos), ('unknown', unk), ('pad', pad)):
    if token not in vocab:
      raise ValueError(f'the {what}\'s {name} token {token!r} is not in its vocab.json.')
  with hub.reading(what, folder):
    tok = Backend(models.BPE(vocab=vocab, merges=merges, unk_token=unk,
                             continuing_subword_prefix='', end_of_word_suffix='</w>',
                             fuse_unk=False))
  tok.normalizer = normalizers.Sequence([
      normalizers.NFC(), normalizers.Replace(Regex(r'\s+'), ' '), normalizers.Lowercase()])
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(_CLIP_PATTERN), behavior='removed', invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False)])
  tok.decoder = decoders.ByteLevel()
  # transformers splits every special token (the pad too: "!" in SD 2.x) out of the text first.
  tok.add_special_tokens([AddedToken(t, special=True) for t in dict.fromkeys((bos, eos, unk, pad))])
  tok.post_processor = processors.TemplateProcessing(
      single=f'{bos} $A {eos}', pair=f'{bos} $A {eos} {eos} $B {eos}',
      special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
  return _finish(tok, _max_length(settings, max_length, what), pad, what)


def bytes_to_unicode() -> dict:
  """GPT-2's reversible map of the 256 bytes to printable characters (CLIP's BPE alphabet):
  printable Latin-1 bytes map to themselves, the rest to code points from 256 on."""
  keep = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('\xa1'), ord('\xac') + 1))
          + list(range(ord('\xae'), ord('\xff') + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in keep:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def write_clip_files(path: str, merges, max_length: int, specials_last: bool = True,
                     pad: str = '<|endoftext|>') -> int:
  """CLIP's tokenizer files (vocab.json, merges.txt, tokenizer_config.json,
  special_tokens_map.json) for a list of merges ('a b' strings), the vocabulary built as CLIP
  builds it: the byte tokens, their end-of-word forms, one token per merge, then (or, with
  specials_last false, first) the start and end tokens. Returns the vocabulary's size."""
  os.makedirs(path, exist_ok=True)
  chars = list(bytes_to_unicode().values())
  specials = ['<|startoftext|>', '<|endoftext|>']
  vocab = chars + [c + '</w>' for c in chars] + [m.replace(' ', '') for m in merges]
  vocab = vocab + specials if specials_last else specials + vocab
  with open(os.path.join(path, 'vocab.json'), 'w', encoding='utf-8') as f:
    json.dump({token: i for i, token in enumerate(vocab)}, f)
  with open(os.path.join(path, 'merges.txt'), 'w', encoding='utf-8') as f:
    f.write('#version: 0.2\n' + ''.join(m + '\n' for m in merges))
  tokens = {'bos_token': specials[0], 'eos_token': specials[1], 'unk_token': specials[1],
            'pad_token': pad}
  with open(os.path.join(path, 'special_tokens_map.json'), 'w') as f:
    json.dump(tokens, f, indent=1)
  with open(os.path.join(path, 'tokenizer_config.json'), 'w') as f:
    json.dump(dict(tokens, model_max_length=max_length, tokenizer_class='CLIPTokenizer'), f,
              indent=1)
  return len(vocab)


def t5(folder: str, max_length: int, what: str = 'T5 tokenizer') -> Tokenizer:
  """The tokenizer.json of a folder (T5's: Unigram, end token appended), padded with its pad
  token (special_tokens_map.json's, else <pad>)."""
  from tokenizers import Tokenizer as Backend  # pylint: disable=g-import-not-at-top
  path = os.path.join(folder, 'tokenizer.json')
  if not os.path.isfile(path):
    spiece = os.path.isfile(os.path.join(folder, 'spiece.model'))
    raise ValueError(f'the {what} at {folder!r} has no tokenizer.json' +
                     (' (only a SentencePiece spiece.model, which this project does not read)'
                      if spiece else '') + '.')
  with hub.reading(what, path):
    tok = Backend.from_file(path)
  pad = _token(_settings(folder, what).get('pad_token')) or '<pad>'
  return _finish(tok, max_length, pad, what)

"""Converts an OpenCLIP PyTorch pickle (HPSv2, HPSv2.1) into an OpenCLIP folder the project
reads without torch (models/clip/open_clip.py). Run it once, in an environment with torch and
open_clip, never inside the project's own runs:

  pip install torch open-clip-torch          # a separate environment is fine
  python -m experiments.tools.convert_open_clip --checkpoint HPS_v2.1_compressed.pt --model ViT-H-14 \
      --out runs/hpsv2.1
  python main.py --config=configs/sd.py --config.reward.name=hpsv2 \
      --config.reward.model=runs/hpsv2.1 ...

The pickle is read with torch.load(weights_only=True): tensors and plain containers only,
never arbitrary objects. Writes OUT/open_clip_model.safetensors (the state dict under OpenCLIP's
keys; a `state_dict` entry is unwrapped, a `module.` prefix dropped), OUT/open_clip_config.json
(the model config and preprocessing) and the BPE tokenizer in the hub's CLIP format (vocab.json,
merges.txt: OpenCLIP's own vocabulary, or --tokenizer's files).
"""

import argparse
import gzip
import json
import os
import shutil
import sys

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def read_state_dict(path: str) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  state = torch.load(path, map_location='cpu', weights_only=True)
  if isinstance(state, dict) and 'state_dict' in state:
    state = state['state_dict']
  if not isinstance(state, dict) or not all(hasattr(v, 'shape') for v in state.values()):
    raise ValueError(f'{path} holds no state dict of tensors.')
  return {(k[len('module.'):] if k.startswith('module.') else k): v.contiguous()
          for k, v in state.items()}


def write_open_clip_tokenizer(out: str, context_length: int) -> None:
  """OpenCLIP's BPE vocabulary (its bpe_simple_vocab_16e6.txt.gz) as CLIP tokenizer files
  (models/tokenizers.py reads them): byte tokens, their end-of-word forms, the merges, then the
  two special tokens."""
  from open_clip import tokenizer as oc_tokenizer  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
  from models import tokenizers  # pylint: disable=g-import-not-at-top
  with gzip.open(oc_tokenizer.default_bpe()) as f:
    merges = f.read().decode('utf-8').split('\n')[1:49152 - 256 - 2 + 1]
  tokenizers.write_clip_files(out, merges, context_length)


def convert(checkpoint: str, out: str, model_cfg: dict, tokenizer: str = '',
            resize_mode: str = 'shortest') -> str:
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  state = read_state_dict(checkpoint)
  os.makedirs(out, exist_ok=True)
  save_file(state, os.path.join(out, 'open_clip_model.safetensors'))
  config = {'model_cfg': model_cfg,
            'preprocess_cfg': {'mean': list(_CLIP_MEAN), 'std': list(_CLIP_STD),
                               'interpolation': 'bicubic', 'resize_mode': resize_mode}}
  with open(os.path.join(out, 'open_clip_config.json'), 'w') as f:
    json.dump(config, f, indent=1)
  if tokenizer:
    for name in os.listdir(tokenizer):
      if name.endswith(('.json', '.txt')) and name != 'config.json':
        shutil.copy(os.path.join(tokenizer, name), os.path.join(out, name))
  else:
    write_open_clip_tokenizer(out, int(model_cfg.get('text_cfg', {}).get('context_length', 77)))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m experiments.tools.convert_open_clip', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--checkpoint', required=True, help='the .pt/.pth/.bin pickle')
  parser.add_argument('--out', required=True, help='the folder to write')
  parser.add_argument('--model', default='ViT-H-14', help='an OpenCLIP model name')
  parser.add_argument('--model_config', default='', help='or a JSON file of its model config')
  parser.add_argument('--tokenizer', default='', help='a folder of CLIPTokenizer files to use '
                      'instead of OpenCLIP\'s own vocabulary')
  parser.add_argument('--resize_mode', default='shortest', choices=('shortest', 'longest'),
                      help='the preprocessing recorded for clip_score (hpsv2 always pads)')
  args = parser.parse_args(argv)
  try:
    if args.model_config:
      with open(args.model_config) as f:
        model_cfg = json.load(f)
    else:
      import open_clip  # pylint: disable=g-import-not-at-top
      model_cfg = open_clip.get_model_config(args.model)
      if model_cfg is None:
        raise ValueError(f'OpenCLIP knows no model {args.model!r}.')
    out = convert(args.checkpoint, args.out, model_cfg, args.tokenizer, args.resize_mode)
  except (ValueError, OSError, ImportError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)
  print(f'wrote {out}')


if __name__ == '__main__':
  main()

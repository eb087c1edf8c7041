"""Checks the ImageReward adapter (rewards/scorers.py: image_reward) through a real reward service
against ImageReward's own package, on a tiny random ImageReward built from its own classes.

Not part of the test suite: it needs PyTorch and the ImageReward package, whose pins conflict
with the project's (docs/rewards.md). The environment it ran in:

  python -m venv --system-site-packages /tmp/irenv
  /tmp/irenv/bin/pip install torch==2.13.0 torchvision==0.28.0
  /tmp/irenv/bin/pip install --no-deps image-reward==1.5 timm==0.6.13 fairscale==0.4.13 \
      openai-clip==1.0.1 diffusers==0.27.2
  /tmp/irenv/bin/pip install accelerate transformers==4.33.3 datasets==2.14.7 \
      huggingface_hub==0.25.2
  /tmp/irenv/bin/python tests/rewards/image_reward_check.py

ImageReward's constructor builds BLIP with a ViT-L image tower (fixed in its code) and reads
`bert-base-uncased`'s tokenizer from the hub; here that tokenizer is a tiny vocabulary placed
in a private offline hub cache, and the BERT text encoder is one layer (its med_config). The
script
  1. saves a random ImageReward's state dict and med_config, as ImageReward ships them;
  2. scores uint8 images with the package itself: RM.load(checkpoint, med_config=...).score;
  3. starts `python -m rewards.serve --scorer=rewards.scorers:image_reward` on that checkpoint
     and asks it the same, through the project's service client, with prompts interleaved;
  4. prints the largest difference, and exits 1 if it is above 1e-5.
"""

import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
PROMPTS = ['a red cat', 'two dogs']


def offline_bert_tokenizer(hub_cache: str) -> int:
  """A tiny uncased WordPiece vocabulary as the hub cache's `bert-base-uncased`."""
  snapshot = os.path.join(hub_cache, 'models--bert-base-uncased', 'snapshots', '0' * 40)
  os.makedirs(snapshot, exist_ok=True)
  os.makedirs(os.path.join(hub_cache, 'models--bert-base-uncased', 'refs'), exist_ok=True)
  with open(os.path.join(hub_cache, 'models--bert-base-uncased', 'refs', 'main'), 'w') as f:
    f.write('0' * 40)
  vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + list('abcdefghijklmnopqrstuvwxyz')
  vocab += ['##' + c for c in 'abcdefghijklmnopqrstuvwxyz'] + list('0123456789.,!?')
  with open(os.path.join(snapshot, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(vocab) + '\n')
  with open(os.path.join(snapshot, 'tokenizer_config.json'), 'w') as f:
    json.dump({'do_lower_case': True, 'model_max_length': 512}, f)
  return len(vocab)


def main() -> int:
  tmp = tempfile.mkdtemp()
  hub = os.path.join(tmp, 'hub')   # every name the pinned libraries read it by
  os.environ.update(HF_HUB_CACHE=hub, HUGGINGFACE_HUB_CACHE=hub, TRANSFORMERS_CACHE=hub,
                    HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
  vocab = offline_bert_tokenizer(os.environ['HF_HUB_CACHE'])
  import torch  # pylint: disable=g-import-not-at-top
  import ImageReward as RM  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  med_config = os.path.join(tmp, 'med_config.json')
  with open(med_config, 'w') as f:   # ImageReward's med_config, one layer deep
    json.dump({'architectures': ['BertModel'], 'hidden_act': 'gelu', 'hidden_size': 768,
               'initializer_range': 0.02, 'intermediate_size': 256, 'layer_norm_eps': 1e-12,
               'max_position_embeddings': 64, 'model_type': 'bert', 'num_attention_heads': 12,
               'num_hidden_layers': 1, 'pad_token_id': 0, 'type_vocab_size': 2,
               'vocab_size': vocab + 2, 'encoder_width': 1024, 'add_cross_attention': True,
               'attention_probs_dropout_prob': 0.0, 'hidden_dropout_prob': 0.0}, f)
  torch.manual_seed(0)
  model = RM.ImageReward(med_config=med_config, device='cpu')
  with torch.no_grad():
    for p in model.mlp.parameters():   # its init leaves the head near zero: make it count
      p.add_(0.05 * torch.randn_like(p))
  checkpoint = os.path.join(tmp, 'ImageReward-tiny.pt')
  torch.save(model.state_dict(), checkpoint)
  del model

  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
  prompts = [PROMPTS[i % 2] for i in range(5)]
  rm = RM.load(checkpoint, device='cpu', med_config=med_config)
  with torch.no_grad():
    direct = np.array([rm.score(p, Image.fromarray(img)) for p, img in zip(prompts, images)])

  sys.path.insert(0, ROOT)
  from tests.rewards import served as served_lib  # pylint: disable=g-import-not-at-top
  served = served_lib.serve_and_score(
      'rewards.scorers:image_reward',
      {'model': checkpoint, 'device': 'cpu', 'med_config': med_config}, images, prompts, tmp)
  error = float(np.max(np.abs(served - direct)))
  print(f'ImageReward package: {np.round(direct, 5).tolist()}')
  print(f'through the service: {np.round(served, 5).tolist()}')
  print(f'largest difference: {error:.3g}')
  return 0 if error < 1e-5 else 1


if __name__ == '__main__':
  sys.exit(main())

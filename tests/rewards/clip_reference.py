"""Writes the PickScore and HPSv2 parity fixtures: tiny random models saved in the real formats
by the reference PyTorch code, and that code's outputs on them, in float32.

  python -m venv --system-site-packages /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0 torchvision==0.28.0 open-clip-torch==3.3.0
  /tmp/torchenv/bin/python tests/rewards/clip_reference.py tests/rewards/data/clip

(torchvision's compiled operators are not needed, only its PIL transforms.) Writes
  DIR/pickscore/   transformers' PyTorch CLIPModel (model.safetensors, config.json), its
                   tokenizer and CLIPImageProcessor: PickScore's format
  DIR/hpsv2/       an OpenCLIP CLIP saved as HPSv2 ships it (a torch.save'd {'state_dict'}),
                   then converted by experiments/tools/convert_open_clip.py
  DIR/reference.npz
    images [3, 20, 28, 3] uint8, and PROMPTS
    pick_pixels   CLIPProcessor's pixel values; pick_logits  CLIPModel's logits_per_image [3, 2]
    hps_pixels    HPSv2's preprocessing (longer side resized to 32 with PIL bicubic, the other
                  padded with black, centred, normalised); hps_scores  [3, 2] the diagonal HPSv2
                  takes, for every image-prompt pair: OpenCLIP's normalised image features @
                  its normalised text features (model(image, text) with output_dict)
tests/rewards/test_clip.py compares the project's JAX rewards to these.
"""

import json
import os
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
sys.path.insert(0, ROOT)

PROMPTS = ('a red cat', 'two blue dogs on a sofa')
TEXT_LENGTH = 16
IMAGE = 32


def images() -> np.ndarray:
  """Three smooth non-square uint8 images [3, 20, 28, 3] (resizing is exercised both ways)."""
  y, x = np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 28), indexing='ij')
  base = [np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], -1),
          np.stack([1 - x * y, np.cos(3 * x) ** 2, y], -1),
          np.stack([np.full_like(x, 0.2), x ** 2, 1 - y], -1)]
  return np.round(np.stack(base) * 255).astype(np.uint8)


def hps_preprocess(pil, mean, std):
  """HPSv2's evaluation transform, restated with torchvision's functional ops."""
  from torchvision.transforms import functional as F  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import InterpolationMode  # pylint: disable=g-import-not-at-top
  width, height = pil.size
  scale = IMAGE / max(height, width)
  new = (round(height * scale), round(width * scale))
  img = F.resize(pil, list(new), InterpolationMode.BICUBIC)
  pad_h, pad_w = IMAGE - new[0], IMAGE - new[1]
  img = F.pad(img, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
  return F.normalize(F.to_tensor(img.convert('RGB')), mean, std)


def write_pickscore(folder: str, imgs, pil):
  from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  vocab = random_weights.write_tokenizer(folder, TEXT_LENGTH, specials_last=True)
  tokenizer = CLIPTokenizer.from_pretrained(folder)
  config = CLIPConfig(
      text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_hidden_layers=2,
                       max_position_embeddings=TEXT_LENGTH, hidden_act='gelu',
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id),
      vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2, image_size=IMAGE, patch_size=8, hidden_act='gelu'),
      projection_dim=16, logit_scale_init_value=np.log(100.0))
  torch.manual_seed(0)
  model = CLIPModel(config).eval()
  model.save_pretrained(folder, safe_serialization=True)
  processor = CLIPProcessor(CLIPImageProcessor(size={'shortest_edge': IMAGE},
                                               crop_size={'height': IMAGE, 'width': IMAGE}),
                            tokenizer)
  processor.image_processor.save_pretrained(folder)
  inputs = processor(text=list(PROMPTS), images=pil, padding='max_length', truncation=True,
                     max_length=TEXT_LENGTH, return_tensors='pt')
  with torch.no_grad():
    logits = model(**inputs).logits_per_image
  del imgs
  return {'pick_pixels': inputs['pixel_values'].numpy(), 'pick_logits': logits.numpy()}


def write_hpsv2(folder: str, pil):
  import open_clip  # pylint: disable=g-import-not-at-top
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  from experiments.tools import convert_open_clip  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    vocab = random_weights.write_tokenizer(os.path.join(tmp, 'tok'), TEXT_LENGTH,
                                           specials_last=True)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(tmp, 'tok'))
    model_cfg = {'embed_dim': 16,
                 'vision_cfg': {'image_size': IMAGE, 'layers': 2, 'width': 32, 'head_width': 8,
                                'patch_size': 8},
                 'text_cfg': {'context_length': TEXT_LENGTH, 'vocab_size': vocab, 'width': 32,
                              'heads': 4, 'layers': 2}}
    torch.manual_seed(1)
    model = open_clip.CLIP(**model_cfg, output_dict=True).eval()
    with torch.no_grad():   # OpenCLIP initialises the norms to 1 and 0: make them count
      for name, p in model.named_parameters():
        if 'ln' in name:
          p.add_(0.1 * torch.randn_like(p))
    pickle = os.path.join(tmp, 'HPS_tiny.pt')
    torch.save({'state_dict': model.state_dict()}, pickle)
    convert_open_clip.convert(pickle, folder, model_cfg, tokenizer=os.path.join(tmp, 'tok'),
                              resize_mode='longest')
  mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
  pixels = torch.stack([hps_preprocess(p, mean, std) for p in pil])
  ids = []
  for prompt in PROMPTS:   # OpenCLIP's layout: start, tokens, end, zeros
    tokens = tokenizer(prompt, truncation=True, max_length=TEXT_LENGTH).input_ids
    ids.append(tokens + [0] * (TEXT_LENGTH - len(tokens)))
  with torch.no_grad():
    out = model(pixels, torch.tensor(ids))
    scores = out['image_features'] @ out['text_features'].T
  return {'hps_pixels': pixels.numpy(), 'hps_scores': scores.numpy()}


def main(out: str) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  torch.set_default_dtype(torch.float32)
  imgs = images()
  pil = [Image.fromarray(i) for i in imgs]
  arrays = {'images': imgs}
  arrays.update(write_pickscore(os.path.join(out, 'pickscore'), imgs, pil))
  arrays.update(write_hpsv2(os.path.join(out, 'hpsv2'), pil))
  np.savez(os.path.join(out, 'reference.npz'), **arrays)
  with open(os.path.join(out, 'README.md'), 'w') as f:
    f.write('Tiny random PickScore (transformers CLIPModel) and HPSv2 (OpenCLIP) folders and '
            f'their PyTorch outputs, written by tests/rewards/clip_reference.py (torch '
            f'{torch.__version__}, prompts {json.dumps(PROMPTS)}); see that script.\n')
  print(f'wrote {out}')


if __name__ == '__main__':
  main(sys.argv[1])

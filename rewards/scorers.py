"""Scorer factories for the reward service (python -m rewards.serve --scorer=rewards.scorers:NAME
--kwargs='{...}'). Each returns score(images uint8 [n, H, W, 3], prompts: n str) -> [n].

  project_reward  any of this project's image rewards (clip_score, pickscore, hpsv2,
                  aesthetic, ...), built from its reward fields: a JAX model on the service's
                  own device, away from the backbone's memory
  image_reward    ImageReward (Xu et al. 2023), from its published package:
                    pip install image-reward      (PyTorch; downloads ImageReward-v1.0)
  vqascore        VQAScore (Lin et al. 2024; CLIP-FlanT5) from t2v_metrics:
                    pip install t2v-metrics       (PyTorch; downloads the model)

The two PyTorch adapters are optional extras: their packages are imported only when the
service starts with them, in whatever environment runs the service.
"""

import os
import tempfile

import numpy as np


def _by_prompt(prompts):
  """{prompt: [row indices]} in first-appearance order."""
  groups = {}
  for i, p in enumerate(prompts):
    groups.setdefault(p, []).append(i)
  return groups


def project_reward(name: str, **fields):
  """One of this project's image rewards (reward.name = name, reward.FIELD = fields), compiled
  once per image shape; prompts are encoded once each."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import rewards  # pylint: disable=g-import-not-at-top
  defaults = dict(rewards.fields(), name=name, temperature=1.0)
  unknown = sorted(set(fields) - set(defaults))
  if unknown:
    raise ValueError(f'project_reward: unknown reward fields {unknown}; valid: '
                     f'{sorted(rewards.fields())}.')
  cfg = ml_collections.ConfigDict(dict(defaults, **fields))
  if not rewards.get_kind(name).images:
    raise ValueError(f'project_reward serves image rewards; {name!r} is not one.')
  built, texts = {}, {}
  call = jax.jit(lambda reward, x, cond: reward(x, cond))

  def score(images, prompts):
    shape = tuple(images.shape[1:])
    if shape not in built:
      built[shape] = rewards.get_reward(cfg, shape)
    reward = built[shape]
    x = images.astype(np.float32) / 127.5 - 1.0   # a pixel backbone's [-1, 1] convention
    if reward.encode_text is None:
      return np.asarray(call(reward, x, None))
    missing = [p for p in dict.fromkeys(prompts) if p not in texts]
    if missing:
      texts.update(zip(missing, reward.encode_text(missing)))
    out = np.zeros(len(images), np.float32)
    for prompt, rows in _by_prompt(prompts).items():
      out[rows] = np.asarray(call(reward, x[rows], {'reward_text': texts[prompt]}))
    return out

  return score


def _pil(images):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return [Image.fromarray(np.asarray(img, np.uint8)) for img in images]


def image_reward(model: str = 'ImageReward-v1.0', device: str = 'cuda',
                 download_root: str = '', med_config: str = ''):
  """ImageReward's score of each image for its prompt (its package's RM.load and score).
  model: a name the package knows, or a checkpoint file; med_config: its BERT config file
  (the package downloads its own when empty)."""
  try:
    import ImageReward as RM  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError('the image_reward scorer needs the ImageReward package: '
                     'pip install image-reward') from None
  rm = RM.load(model, device=device, download_root=download_root or None,
               med_config=med_config or None)

  def score(images, prompts):
    import torch  # pylint: disable=g-import-not-at-top
    out = np.zeros(len(images), np.float32)
    with torch.no_grad():
      for prompt, rows in _by_prompt(prompts).items():
        scores = rm.score(prompt, _pil(images[rows]))
        out[rows] = np.reshape(np.asarray(scores, np.float32), (len(rows),))
    return out

  return score


def vqascore(model: str = 'clip-flant5-xxl', device: str = 'cuda'):
  """VQAScore, P("Yes" | image, "Does this figure show '{prompt}'?"), from t2v_metrics."""
  try:
    import t2v_metrics  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError('the vqascore scorer needs t2v_metrics: pip install t2v-metrics') from None
  scorer = t2v_metrics.VQAScore(model=model, device=device)

  def score(images, prompts):
    out = np.zeros(len(images), np.float32)
    with tempfile.TemporaryDirectory() as tmp:   # t2v_metrics reads images from files
      paths = []
      for i, img in enumerate(_pil(images)):
        paths.append(os.path.join(tmp, f'{i}.png'))
        img.save(paths[-1])
      for prompt, rows in _by_prompt(prompts).items():
        scores = scorer(images=[paths[i] for i in rows], texts=[prompt])
        out[rows] = np.asarray(scores.detach().float().cpu().numpy(), np.float32)[:, 0]
    return out

  return score

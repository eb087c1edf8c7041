"""Scorer factories for the reward service (python -m rewards.serve --scorer=rewards.scorers:NAME
--kwargs='{...}'). Each returns score(images uint8 [n, H, W, 3], prompts: n str) -> [n].

  project_reward  any of this project's image rewards (clip_score, pickscore, hpsv2,
                  aesthetic, ...), built from its reward fields: a JAX model on the service's
                  own device, away from the backbone's memory
  image_reward    ImageReward (Xu et al. 2023), from its published package:
                    pip install image-reward      (PyTorch; downloads ImageReward-v1.0)
  vqascore        VQAScore (Lin et al. 2024; CLIP-FlanT5) from t2v_metrics:
                    pip install t2v-metrics       (PyTorch; downloads the model)
  geneval         GenEval's judge (Ghosh et al. 2023): 1 where the image satisfies its
                  prompt's object, count, colour and position specification, else 0, by the
                  released rules (rewards/geneval.py) on torchvision's COCO Mask R-CNN and a
                  CLIP colour classifier from transformers:
                    pip install torch torchvision transformers

The PyTorch adapters are optional extras: their packages are imported only when the service
starts with them, in whatever environment runs the service.
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


# GenEval's zero-shot colour prompts (evaluate_images.py: color_classification).
_COLOUR_TEMPLATES = ('a photo of a {c} {name}', 'a photo of a {c}-colored {name}',
                     'a photo of a {c} object')


def geneval(detector: str = 'maskrcnn_resnet50_fpn_v2', detector_weights: str = 'DEFAULT',
            clip_model: str = 'openai/clip-vit-large-patch14', device: str = 'cuda',
            background: str = '#999999', mask_threshold: float = 0.5):
  """GenEval's verdict of each image for its prompt, which must be one of GenEval's 553
  (experiments/data/prompts/geneval_metadata.jsonl): 1.0 correct, 0.0 not.

  Detector: torchvision's `detector` (a COCO Mask R-CNN; `detector_weights` '' builds it with
  random weights, for tests) in place of the paper's mmdetection Mask2Former, which no current
  package ships; its COCO classes are GenEval's 80 object names. Colours: CLIP `clip_model`
  (transformers; the paper's ViT-L/14 by default) zero-shot over GenEval's ten colours with its
  three templates, on each object's mask composited onto a grey `background` and cropped to its
  box, as released. The rules, thresholds and summaries are rewards/geneval.py's."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError('the geneval scorer needs torch, torchvision and transformers: '
                     'pip install torch torchvision transformers') from None
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from experiments.data import prompt_suites  # pylint: disable=g-import-not-at-top
  from rewards import geneval as rules  # pylint: disable=g-import-not-at-top

  specs = {p.text: p.spec for p in prompt_suites.suite('geneval')}
  builder = getattr(torchvision.models.detection, detector)
  weights_enum = torchvision.models.get_model_weights(builder)
  categories = weights_enum.COCO_V1.meta['categories']
  if detector_weights:
    model = builder(weights=getattr(weights_enum, detector_weights))
  else:
    model = builder(weights=None, weights_backbone=None, num_classes=len(categories))
  model = model.eval().to(device)
  clip = transformers.CLIPModel.from_pretrained(clip_model).eval().to(device)
  processor = transformers.CLIPProcessor.from_pretrained(clip_model)
  colour_heads = {}

  def colour_head(name):
    """[colours, D]: each colour's mean normalised template embedding, normalised."""
    if name not in colour_heads:
      heads = []
      for colour in rules.COLORS:
        texts = [t.format(c=colour, name=name) for t in _COLOUR_TEMPLATES]
        tokens = processor(text=texts, return_tensors='pt', padding=True, truncation=True,
                           max_length=clip.config.text_config.max_position_embeddings).to(device)
        with torch.no_grad():
          emb = clip.get_text_features(**tokens)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        mean = emb.mean(0)
        heads.append(mean / mean.norm())
      colour_heads[name] = torch.stack(heads)
    return colour_heads[name]

  def colours_of(picture, name, objects):
    crops = []
    blank = Image.new('RGB', picture.size, color=background)
    for obj in objects:
      image = picture
      if obj.mask is not None:
        image = Image.composite(picture, blank, Image.fromarray(obj.mask))
      x0, y0, x1, y1 = obj.box   # a degenerate box still gives CLIP one pixel
      crops.append(image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))))
    pixels = processor(images=crops, return_tensors='pt').to(device)
    with torch.no_grad():
      emb = clip.get_image_features(**pixels)
    emb = emb / emb.norm(dim=-1, keepdim=True)
    picks = (emb @ colour_head(name).T).argmax(-1).tolist()
    return [rules.COLORS[i] for i in picks]

  def detections(picture):
    tensor = torchvision.transforms.functional.to_tensor(picture).to(device)
    with torch.no_grad():
      out = model([tensor])[0]
    raw = {}
    masks = out.get('masks')
    for i, (box, label, score) in enumerate(zip(out['boxes'].tolist(), out['labels'].tolist(),
                                                out['scores'].tolist())):
      name = categories[label]
      if name == 'N/A' or name == '__background__':
        continue
      mask = None
      if masks is not None:
        mask = (masks[i, 0] > mask_threshold).cpu().numpy()
      raw.setdefault(name, []).append((box, score, mask))
    return raw

  def score(images, prompts):
    unknown = sorted({p for p in prompts if p not in specs})
    if unknown:
      raise ValueError(f'geneval scores GenEval\'s own prompts only; not one: {unknown[0]!r}.')
    out = np.zeros(len(images), np.float32)
    for i, (img, prompt) in enumerate(zip(_pil(images), prompts)):
      spec = specs[prompt]
      found = rules.keep_detections(detections(img), spec['tag'])
      correct, _ = rules.judge(spec, found, lambda name, objs, img=img: colours_of(img, name,
                                                                                 objs))
      out[i] = float(correct)
    return out

  return score

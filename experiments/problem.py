"""Turns a config into a problem: backbone, sampler, reward, and the reference it is judged by.

Everything here validates on the host; nothing compiles.
"""

from typing import Any, NamedTuple, Optional

import json
import os

import jax
import ml_collections
import numpy as np

import models
import rewards
import search as search_lib
from experiments import data2d
from models import gmm
from samplers import sampler as sampler_lib


class Problem(NamedTuple):
  backbone: Any
  sampler: Any
  reward: rewards.Reward
  target: Optional[dict]  # the tilted mixture p(x) exp(r / lambda), where it has a closed form
  cond: Any = None        # the condition: a class label, None, or a batch pytree [B, ...]
  prompts: tuple = ()     # text prompts; when set, cond is batched over them
  batch: int = 0          # B independent searches (prompts, or target classes x runs); 0: one
  row_classes: tuple = () # the target class of each of the B searches, when classes are batched


def build(config, guidance: bool = False) -> Problem:
  prompts = tuple(models.read_prompts(config)) if models.is_text_to_image(config.model) else ()
  backbone = models.get_backbone(config.model)
  reward = rewards.get_reward(config.reward, backbone.data_shape, backbone.decoder, prompts)
  sampler = sampler_lib.from_config(config.sampler, backbone)
  temperature = float(config.reward.temperature)
  search_lib.base.check_temperature(temperature)
  cond = condition(config)
  batch, row_classes = 0, ()
  if prompts:
    cond = text_conditions(config.model, reward, prompts)
    batch = len(prompts)
    if int(config.search.get('num_runs', 1)) != 1:
      raise ValueError('search.num_runs must be 1 with prompts (each prompt is one search).')
  else:
    cond, row_classes = batched_conditions(config, reward, cond)
    batch = len(row_classes)
  one_cond = jax.tree.map(lambda c: c[0], cond) if batch else cond
  if guidance:
    scale = float(config.search.get('guidance_scale', 1.0))
    if not (np.isfinite(scale) and scale >= 0):
      raise ValueError(f'search.guidance_scale must be a finite number >= 0, got {scale}.')
    scale = scale / temperature
    check_differentiable(reward, backbone.data_shape, one_cond)
    sampler = sampler.replace(guidance=reward, guidance_scale=scale)
  check_reward_shape(reward, backbone.data_shape, cond=one_cond)
  if reward.probe is not None:  # a host callback: its real output shape, before compiling
    reward.probe()
  return Problem(backbone, sampler, reward, tilted_target(config), cond, prompts, batch,
                 row_classes)


def batched_conditions(config, reward, cond):
  """(cond, row_classes): with reward.target_classes and/or search.num_runs > 1, one condition
  per independent search, class-major ({'target_class': [B]} for the reward, 'label' for a
  class-conditional backbone; row_classes holds the target class of each row, -1 where none);
  else (cond, ())."""
  classes = tuple(int(c) for c in config.reward.get('target_classes', ()))
  runs = int(config.search.get('num_runs', 1))
  if runs < 1:
    raise ValueError(f'search.num_runs must be >= 1, got {runs}.')
  if classes and reward.name not in ('classifier', 'classifier_logodds'):
    raise ValueError(f'reward.target_classes needs the classifier or classifier_logodds '
                     f'reward, not {reward.name!r}.')
  if not classes and runs == 1:
    return cond, ()
  rows = np.repeat(np.asarray(classes or (-1,), np.int32), runs)
  batched = {'run': np.tile(np.arange(runs, dtype=np.int32), len(classes) or 1)}
  if classes:
    batched['target_class'] = rows
  if cond is not None:
    batched['label'] = np.full(len(rows), cond, np.int32)
  return batched, tuple(int(r) for r in rows)


def text_conditions(model_cfg, reward, prompts) -> dict:
  """Per-prompt conditions [P, ...]: the backbone's text states, the prompt index, and the
  reward's own text embedding when it compares images with the prompt."""
  cond = {'text': models.encode_prompts(model_cfg, prompts),
          'prompt_index': np.arange(len(prompts), dtype=np.int32)}
  if reward.encode_text is not None:
    cond['reward_text'] = reward.encode_text(list(prompts))
  return cond


def check_reward_shape(reward, data_shape, n: int = 3, cond=None) -> None:
  """Traces the reward on n abstract samples (no compilation); it must return shape [n]."""
  out = jax.eval_shape(lambda x: reward(x, cond),
                       jax.ShapeDtypeStruct((n,) + tuple(data_shape), np.float32))
  if out.shape != (n,):
    raise ValueError(f'reward {reward.name!r} returned shape {out.shape} for {n} samples; it '
                     f'must return one number per sample, shape ({n},).')


def check_differentiable(reward, data_shape, cond=None) -> None:
  try:
    jax.eval_shape(jax.grad(lambda x: reward(x, cond).sum()),
                   jax.ShapeDtypeStruct((2,) + tuple(data_shape), np.float32))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'search.guidance needs a differentiable reward; {reward.name!r} is not '
                     f'({type(e).__name__}).') from None


def tilted_target(config) -> Optional[dict]:
  """Closed-form p* for the analytic mixture with the linear or gaussian reward, else None."""
  if config.model.name != 'gmm' or config.reward.name not in ('linear', 'gaussian', 'quadratic'):
    return None
  params = gmm.make_params(config.model.means, config.model.stds, config.model.weights)
  lam, rc = float(config.reward.temperature), config.reward
  if rc.name == 'linear':
    return gmm.tilt_linear(params, rc.weights, rc.bias, lam)
  if rc.name == 'gaussian':
    return gmm.tilt_gaussian(params, rc.center, rc.width, lam)
  return gmm.tilt_gaussian(params, (0.0,) * params['means'].shape[1], 1.0, lam)


def base_samples(model_cfg, key, n: int) -> np.ndarray:
  """Points of the distribution the backbone models: exact mixture draws or training data."""
  if model_cfg.name == 'gmm':
    params = gmm.make_params(model_cfg.means, model_cfg.stds, model_cfg.weights)
    return np.asarray(gmm.sample(params, key, n))
  data_cfg = _training_data_config(model_cfg.checkpoint)
  data_cfg.num_points = n
  return data2d.make_dataset(data_cfg, seed=data_cfg.seed + 1)


def _training_data_config(checkpoint: str) -> ml_collections.ConfigDict:
  """The `data` section of a 2D train run (its seed included)."""
  with open(os.path.join(checkpoint, 'config.json')) as f:
    train_cfg = json.load(f)
  return ml_collections.ConfigDict(dict(train_cfg['data'], seed=train_cfg['seed']))


def exact_target_draws(config, problem: Problem, key, n: int) -> Optional[np.ndarray]:
  """n exact draws of the tilted target, or None where it has no exact sampler: the closed form
  for the analytic mixture; for a 2D backbone trained on ring or checkerboard, the tilted data
  distribution (the DTS paper's target, which the trained backbone only approximates)."""
  if problem.target is not None:
    return np.asarray(gmm.sample(problem.target, key, n))
  if config.model.name != 'mlp' or not config.model.get('checkpoint'):
    return None
  data_cfg = _training_data_config(config.model.checkpoint)
  seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
  return data2d.tilted_draws(data_cfg, config.reward, n, seed)


def condition(config):
  """The class label passed to a class-conditional backbone (config.condition >= 0), or None."""
  c = int(config.get('condition', -1))
  return None if c < 0 else c


def image_metrics(config, x0, towards_reward: bool, row_classes=None) -> dict:
  """Classifier-based metrics for digit images (Frechet distance to held-out digits of the
  target class, accuracy, feature diversity); {} for other data or without a classifier.

  The target class is config.condition; a search (towards_reward) falls back to the classifier
  reward's target (reward.target_class, or the set reward.classes for classifier_set). Without
  a target, the reference is all held-out digits.
  With row_classes [N] (searches towards several classes at once), each class's samples are
  judged against its own held-out digits and the metrics averaged over the classes.
  """
  if x0.ndim != 4 or config.get('data', {}).get('name') != 'digits':
    return {}
  classifier_dir = config.reward.get('checkpoint', '')
  if not classifier_dir:
    return {}
  from experiments import image_metrics as image_metrics_lib  # pylint: disable=g-import-not-at-top
  target = condition(config)
  if towards_reward and target is None and config.reward.name.startswith('classifier'):
    target = (tuple(config.reward.classes) if config.reward.name == 'classifier_set'
              else int(config.reward.target_class))
  heldout = config.reward.get('heldout_checkpoint', '')
  if row_classes is not None and np.min(row_classes) >= 0:
    return image_metrics_lib.evaluate_per_class(x0, row_classes, classifier_dir, heldout)
  return image_metrics_lib.evaluate(x0, classifier_dir, target, heldout)


def record_images(config, workdir: str, x0, title: str, towards_reward: bool,
                  row_classes=None) -> dict:
  """For image samples: saves DIR/samples.png (a grid of up to 128) and returns their metrics."""
  from experiments import plots  # pylint: disable=g-import-not-at-top
  plots.image_grid(os.path.join(workdir, 'samples.png'), x0[:128], title=title)
  return image_metrics(config, x0, towards_reward, row_classes)


def write_prompt_outputs(workdir, problem, x0, r, **extra) -> None:
  """For a text-to-image run with x0 [P, N, ...] and rewards r [P, N]: decodes the latents,
  writes one PNG grid per prompt (best reward first), prompts.txt, and samples.npz with x0,
  reward, uint8 images and prompt_index flattened to [P * N, ...] (plus `extra` arrays)."""
  from experiments import io  # pylint: disable=g-import-not-at-top
  from experiments import plots  # pylint: disable=g-import-not-at-top
  decode = jax.jit(lambda d, z: d(z))
  images = np.stack([np.asarray(decode(problem.backbone.decoder, z)) for z in x0])
  images = np.round(images * 255.0).astype(np.uint8)
  for i in range(len(problem.prompts)):
    order = np.argsort(-r[i])
    plots.save_rgb_grid(os.path.join(workdir, f'samples_{i:03d}.png'), images[i][order[:64]])
  io.write_text(workdir, 'prompts.txt', '\n'.join(problem.prompts) + '\n')
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  io.write_samples(workdir, x0=flat(x0), reward=r.reshape(-1), images=flat(images),
                   prompt_index=np.repeat(np.arange(len(problem.prompts)), r.shape[1]), **extra)

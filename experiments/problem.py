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
from experiments import data2d
from models import gmm
from samplers import sampler as sampler_lib


class Problem(NamedTuple):
  backbone: Any
  sampler: Any
  reward: rewards.Reward
  target: Optional[dict]  # the tilted mixture p(x) exp(r / lambda), where it has a closed form
  cond: Any = None        # the condition: a class label, None, or per-prompt pytree [P, ...]
  prompts: tuple = ()     # text prompts; when set, cond is batched over them


def build(config, guidance: bool = False) -> Problem:
  prompts = tuple(models.read_prompts(config)) if models.is_text_to_image(config.model) else ()
  backbone = models.get_backbone(config.model)
  reward = rewards.get_reward(config.reward, backbone.data_shape, backbone.decoder, prompts)
  sampler = sampler_lib.from_config(config.sampler, backbone)
  temperature = float(config.reward.temperature)
  if not temperature > 0:
    raise ValueError(f'reward.temperature must be positive, got {temperature}.')
  cond = condition(config)
  if prompts:
    cond = text_conditions(config.model, reward, prompts)
  one_cond = jax.tree.map(lambda c: c[0], cond) if prompts else None
  if guidance:
    scale = float(config.search.get('guidance_scale', 1.0)) / temperature
    check_differentiable(reward, backbone.data_shape, one_cond)
    sampler = sampler.replace(guidance=reward, guidance_scale=scale)
  check_reward_shape(reward, backbone.data_shape, cond=one_cond)
  return Problem(backbone, sampler, reward, tilted_target(config), cond, prompts)


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
  with open(os.path.join(model_cfg.checkpoint, 'config.json')) as f:
    train_cfg = json.load(f)
  data_cfg = dict(train_cfg['data'])
  data_cfg['num_points'] = n
  return data2d.make_dataset(ml_collections.ConfigDict(data_cfg), seed=train_cfg['seed'] + 1)


def reference_points(config, problem: Problem, key, n: int) -> np.ndarray:
  """Exact draws of the tilted target where known, else draws of the base distribution."""
  if problem.target is not None:
    return np.asarray(gmm.sample(problem.target, key, n))
  return base_samples(config.model, key, n)


def condition(config):
  """The class label passed to a class-conditional backbone (config.condition >= 0), or None."""
  c = int(config.get('condition', -1))
  return None if c < 0 else c


def image_metrics(config, x0, towards_reward: bool) -> dict:
  """Classifier-based metrics for digit images (Frechet distance to held-out digits of the
  target class, accuracy, feature diversity); {} for other data or without a classifier.

  The target class is config.condition; a search (towards_reward) falls back to the classifier
  reward's reward.target_class. Without a target, the reference is all held-out digits.
  """
  if x0.ndim != 4 or config.get('data', {}).get('name') != 'digits':
    return {}
  classifier_dir = config.reward.get('checkpoint', '')
  if not classifier_dir:
    return {}
  from experiments import image_metrics as image_metrics_lib  # pylint: disable=g-import-not-at-top
  target = condition(config)
  if towards_reward and target is None and config.reward.name == 'classifier':
    target = int(config.reward.target_class)
  return image_metrics_lib.evaluate(x0, classifier_dir, target)


def record_images(config, workdir: str, x0, title: str, towards_reward: bool) -> dict:
  """For image samples: saves DIR/samples.png (a grid of up to 128) and returns their metrics."""
  from experiments import plots  # pylint: disable=g-import-not-at-top
  plots.image_grid(os.path.join(workdir, 'samples.png'), x0[:128], title=title)
  return image_metrics(config, x0, towards_reward)


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

"""Everything after a program returns: metrics, figures and the contract files, with one
recorder per domain, chosen once when the problem is built (experiments/problem.py):

  Points2D     2D points: energy distance and MMD to exact draws of the tilted target where
               one exists, and a scatter over the target (or the base data).
  Images       pixel images (digits): an image grid, and classifier metrics where the run has
               a classifier (Frechet distance, accuracy, feature diversity).
  TextToImage  text-to-image latents: decoded, one grid per prompt, prompts.txt, and the uint8
               images in samples.npz.
  Recorder     anything else: samples.npz and metrics.json.

Files are written by process 0 only (experiments/files.py).
"""

import os
from typing import Any, NamedTuple

import jax
import numpy as np

import models
import rewards
from experiments import files
from experiments.evaluation import metrics as metrics_lib
from experiments.evaluation import image_metrics as image_metrics_lib
from experiments.evaluation import plots
from experiments.evaluation import references
from samplers.ground import pixels


class Run(NamedTuple):
  """The run a recorder records: its own config (a sweep's points share a problem, not their
  seed or method), the problem, and the workdir."""
  config: Any
  problem: Any
  workdir: str
  extra: Any = None   # {name: [N]} more per-sample arrays for samples.npz (held-out rewards)


class Recorder:
  """The generic domain; subclasses add their metrics and figures. Recorders hold no state."""

  # -- search runs -----------------------------------------------------------------------------
  def record_search(self, run: Run, result, metrics: dict, title_prefix: str = ''):
    """Writes a search's outputs; returns (metrics, x0 as the program returned it)."""
    problem = run.problem
    x0, r = np.asarray(result.x0), np.asarray(result.reward)
    traces = dict(trace_nfe=np.asarray(result.trace_nfe),
                  trace_best=np.asarray(result.trace_best))
    flat_x0 = x0.reshape((-1,) + x0.shape[2:]) if problem.batch else x0
    metrics.update(self.search_references(run, flat_x0, metrics, title_prefix))
    if problem.batch:
      metrics.update(num_searches=problem.batch, nfe_all_searches=int(np.sum(result.nfe)),
                     nfe_per_search=float(np.mean(result.nfe)))
      traces['row_class'] = np.repeat(np.asarray(problem.row_classes), x0.shape[1])
    metrics.update(self.search_images(run, flat_x0, metrics, traces.get('row_class')))
    files.write_samples(run.workdir, x0=flat_x0, reward=r.reshape(-1), **traces,
                        **(run.extra or {}))
    files.write_metrics(run.workdir, metrics)
    return metrics, x0

  def search_references(self, run: Run, x0, metrics: dict, title_prefix: str) -> dict:
    """Metrics against reference points (and their figure); none here."""
    del run, x0, metrics, title_prefix
    return {}

  def search_images(self, run: Run, x0, metrics: dict, row_classes) -> dict:
    """Image metrics (and their figure); none here."""
    del run, x0, metrics, row_classes
    return {}

  # -- plain sampling --------------------------------------------------------------------------
  def record_samples(self, run: Run, x0, r, metrics: dict, key) -> dict:
    """Writes a sampling run's outputs; key: for reference draws. Returns the metrics."""
    metrics.update(reward_mean=float(np.mean(r)), reward_max=float(np.max(r)))
    metrics.update(self.sample_metrics(run, x0, key))
    files.write_samples(run.workdir, x0=x0, reward=r)
    files.write_metrics(run.workdir, metrics)
    return metrics

  def sample_metrics(self, run: Run, x0, key) -> dict:
    del run, x0, key
    return {}

  # -- comparisons -----------------------------------------------------------------------------
  def record_comparison(self, run: Run, panels: dict, rows: dict) -> None:
    """A comparison's figure, from each method's x0 (panels) and metrics (rows); none here."""
    del run, panels, rows


def sampler_label(sampler) -> str:
  return f'{sampler.interpolant.name}-{"SDE" if sampler.sde else "ODE"}'


class Points2D(Recorder):
  """2D points."""

  def search_references(self, run, x0, metrics, title_prefix) -> dict:
    config, target, out = run.config, run.problem.target, {}
    key = jax.random.key(config.seed + 1)
    exact = references.exact_target_draws(config, target, key, 2048)
    if exact is not None and len(x0) > 1:
      out['energy_distance'] = metrics_lib.two_sample('energy_distance',
                                                      metrics_lib.energy_distance, x0, exact)
      out['mmd'] = metrics_lib.two_sample('mmd', metrics_lib.mmd_rbf, x0, exact)
      # The median heuristic: the bandwidth is the median distance between the reference's
      # points; mmd2_median is the squared MMD (V-statistic), mmd_median its square root.
      bandwidth = metrics_lib.median_bandwidth(exact)
      median_mmd2 = lambda a, b: metrics_lib.mmd_rbf(a, b, bandwidth)
      out['mmd2_median'] = metrics_lib.two_sample('mmd2_median', median_mmd2, x0, exact)
      # The finite-sample floor: as many fresh exact draws score this against the same reference.
      fresh = references.exact_target_draws(config, target, jax.random.key(config.seed + 2),
                                            len(x0))
      if fresh is not None:
        out['mmd_exact_draws'] = metrics_lib.two_sample('mmd_exact_draws', metrics_lib.mmd_rbf,
                                                        fresh, exact)
        out['mmd2_median_floor'] = metrics_lib.two_sample('mmd2_median_floor', median_mmd2,
                                                          fresh, exact)
      for name in ('mmd2_median', 'mmd2_median_floor'):
        if out.get(name) is not None:
          out[name.replace('mmd2', 'mmd')] = float(np.sqrt(max(out[name], 0.0)))
      out = {k: v for k, v in out.items() if v is not None}
    ref = exact if exact is not None else references.base_samples(config.model, key, 2048)
    plots.scatter_2d(os.path.join(run.workdir, 'samples.png'), x0, ref,
                     f'{title_prefix}{config.search.method}, {metrics["nfe"]} NFE: mean '
                     f'reward {metrics.get("reward_mean", np.nan):.3f} ({config.reward.name}, '
                     'higher is better); grey: '
                     + ('the tilted target' if exact is not None else 'the base data'))
    return out

  def sample_metrics(self, run, x0, key) -> dict:
    sampler = run.problem.sampler
    reference = references.base_samples(run.config.model, key, min(len(x0), 4096))
    distance = metrics_lib.two_sample('energy_distance', metrics_lib.energy_distance,
                                      x0[:4096], reference)
    plots.scatter_2d(os.path.join(run.workdir, 'samples.png'), x0[:4096], reference,
                     f'{run.config.model.name}: {sampler_label(sampler)}, '
                     f'{sampler.num_steps} steps, ED {np.nan if distance is None else distance:.4f}')
    return {} if distance is None else {'energy_distance': distance}

  def record_comparison(self, run, panels, rows) -> None:
    config = run.config
    key = jax.random.key(config.seed + 1)
    ref = references.exact_target_draws(config, run.problem.target, key, 2048)
    label = 'tilted target' if ref is not None else 'base data'
    ref = ref if ref is not None else references.base_samples(config.model, key, 2048)
    plots.panels_2d(os.path.join(run.workdir, 'compare.png'), panels, ref, label,
                    {m: f'{m}: mean r = {rows[m].get("reward_mean", np.nan):.2f}, '
                        f'{rows[m]["nfe"]:,} NFE' for m in panels},
                    title=f'Each method\'s samples at a budget of {config.search.budget:,} NFE '
                          f'(reward {config.reward.name}: higher is better)')


class Images(Recorder):
  """Pixel images [N, H, W, C] in [-1, 1]: DIR/samples.png (a grid of up to 128) and, for
  digits with a classifier, its metrics."""

  def search_images(self, run, x0, metrics, row_classes) -> dict:
    title = (f'{run.config.search.method}, {metrics["nfe"]} NFE: mean reward '
             f'{metrics.get("reward_mean", np.nan):.3f} ({run.config.reward.name})')
    plots.image_grid(os.path.join(run.workdir, 'samples.png'), x0[:128], title=title)
    return image_metrics(run.config, x0, True, row_classes)

  def sample_metrics(self, run, x0, key) -> dict:
    del key
    plots.image_grid(os.path.join(run.workdir, 'samples.png'), x0[:128],
                     title=sampler_label(run.problem.sampler))
    return image_metrics(run.config, x0, False)


def image_metrics(config, x0, towards_reward: bool, row_classes=None) -> dict:
  """Classifier-based metrics for digit images (Frechet distance to held-out digits of the
  target class, accuracy, feature diversity); {} for other data or without a classifier.

  Which metrics apply is the reward's declaration, else the backbone's (rewards.evaluation),
  never a name. The target class is config.condition; a search (towards_reward) falls back to the
  class the reward pulls towards (RewardKind.target). Without a target, the reference is
  all held-out digits. With row_classes [N] (searches towards several classes at once), each
  class's samples are judged against its own held-out digits and the metrics averaged over the
  classes.
  """
  kind, evaluation = rewards.get_kind(config.reward.name), rewards.evaluation(config)
  if evaluation == 'cells':
    return image_metrics_lib.evaluate_grid(x0, config.reward)
  classifier_dir = config.reward.get('checkpoint', '')
  if evaluation != 'classifier' or not classifier_dir:
    return {}
  target = models.condition(config)
  reward_target = kind.target
  if towards_reward and target is None and reward_target is not None:
    target = reward_target(config.reward)
  heldout = config.reward.get('heldout_checkpoint', '')
  if row_classes is not None and np.min(row_classes) >= 0:
    return image_metrics_lib.evaluate_per_class(x0, row_classes, classifier_dir, heldout)
  return image_metrics_lib.evaluate(x0, classifier_dir, target, heldout)


class TextToImage(Recorder):
  """Latents [P, N, h, w, c] of P prompts, decoded by the backbone's decoder."""

  def record_search(self, run, result, metrics, title_prefix=''):
    del title_prefix
    x0, r = np.asarray(result.x0), np.asarray(result.reward)
    metrics.update(num_prompts=len(run.problem.prompts),
                   nfe_all_prompts=int(np.sum(result.nfe)))
    write_prompt_outputs(run, x0, r, f'{run.config.search.method}, {metrics["nfe"]} NFE',
                         trace_nfe=np.asarray(result.trace_nfe),
                         trace_best=np.asarray(result.trace_best), **(run.extra or {}))
    files.write_metrics(run.workdir, metrics)
    return metrics, x0

  def record_samples(self, run, x0, r, metrics, key) -> dict:
    del key
    write_prompt_outputs(run, x0, r, f'plain sampling, {metrics["nfe"]} NFE')
    metrics.update(num_prompts=len(run.problem.prompts), reward_mean=float(np.mean(r)),
                   reward_max=float(np.mean(np.max(r, axis=-1))))   # per prompt, averaged
    files.write_metrics(run.workdir, metrics)
    return metrics


def write_prompt_outputs(run: Run, x0, r, what: str, **extra) -> None:
  """With x0 [P, N, ...] and rewards r [P, N]: one PNG grid per prompt, samples_K.png for the
  prompt's index K in the run's list (best reward first, captioned with the prompt, `what` ran
  (method and NFEs), the reward's name and each image's reward), prompts.txt, and samples.npz
  with x0, reward, uint8 images and prompt_index flattened to [P * N, ...] (plus `extra`
  arrays)."""
  prompts, workdir = run.problem.prompts, run.workdir
  index = prompt_indices(run.problem)
  decode = jax.jit(lambda d, z: d(z))
  images = np.stack([np.asarray(decode(run.problem.backbone.decoder, z)) for z in x0])
  images = pixels.unit_to_uint8(images)
  for i in range(len(prompts)):
    order = np.argsort(-r[i])[:64]
    plots.save_rgb_grid(os.path.join(workdir, f'samples_{index[i]:03d}.png'), images[i][order],
                        title=f'"{prompts[i]}": {what}; {run.config.reward.name} reward under '
                              'each image, best first',
                        captions=[f'{v:.3f}' for v in r[i][order]])
  files.write_text(workdir, 'prompts.txt', '\n'.join(prompts) + '\n')
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  files.write_samples(workdir, x0=flat(x0), reward=r.reshape(-1), images=flat(images),
                      prompt_index=np.repeat(index, r.shape[1]), **extra)


def prompt_indices(problem) -> np.ndarray:
  """[P] each prompt's index in the run's whole list (config.prompt_rows keeps a range)."""
  return np.asarray(problem.cond['prompt_index'], np.int64).reshape(-1)


class Vectors(Recorder):
  """Vectors of a dimension other than 2: where the target of each class is known exactly
  (the mixture's class posterior at lambda = 1, rewards/mixture_class.py), each class's draws
  against its component."""

  def search_references(self, run, x0, metrics, title_prefix) -> dict:
    del metrics, title_prefix
    return exact_class_metrics(run.config, run.problem, x0)


def exact_class_metrics(config, problem, x0) -> dict:
  """frechet_exact: the Frechet distance of each class's draws to its exact target's mean
  and covariance, averaged over the classes; frechet_exact_floor: the same of as many exact
  draws (the finite-sample floor, the same for every method of a seed). {} where the target is
  not exact (another reward, lambda != 1, no classes)."""
  from rewards import mixture_class  # pylint: disable=g-import-not-at-top
  from models import gmm  # pylint: disable=g-import-not-at-top
  if (config.reward.name != 'mixture_class' or float(config.reward.temperature) != 1.0
      or not problem.row_classes or min(problem.row_classes) < 0):
    return {}
  params = mixture_class.mixture(config.reward)
  classes = np.asarray(problem.row_classes)
  rows = np.repeat(classes, len(x0) // len(classes))
  key = jax.random.key(config.seed + 2)
  distance, floor = [], []
  for c in sorted(set(classes.tolist())):
    component = mixture_class.class_component(params, c)
    mean = np.asarray(component['means'][0])
    cov = np.diag(np.asarray(component['stds'][0], np.float64) ** 2)
    draws = x0[rows == c]
    exact = np.asarray(gmm.sample(component, jax.random.fold_in(key, c), len(draws)))
    d = metrics_lib.two_sample('frechet_exact', lambda a, _: metrics_lib.frechet_to_moments(
        a, mean, cov), draws, exact)
    if d is None:
      return {}
    distance.append(d)
    floor.append(metrics_lib.frechet_to_moments(exact, mean, cov))
  return {'frechet_exact': float(np.mean(distance)),
          'frechet_exact_floor': float(np.mean(floor))}


def for_problem(problem) -> Recorder:
  """The recorder of the problem's domain."""
  shape = tuple(problem.backbone.data_shape)
  if problem.prompts:
    return TextToImage()
  if shape == (2,):
    return Points2D()
  if len(shape) == 1:
    return Vectors()
  if len(shape) == 3:
    return Images()
  return Recorder()

"""Image metrics through the digit classifier: Frechet distance on its penultimate features to
held-out digits, classifier accuracy, and diversity as mean pairwise feature distance; and,
through a second classifier that no search saw, the held-out accuracy and log-probability and
the Frechet distance on its features (`frechet_heldout`), beside its floor
(`frechet_heldout_floor`: as many real training digits of the target, scored the same way)."""

import functools

import jax
import numpy as np
import scipy.special

from experiments.data import digits
from experiments.evaluation import metrics as metrics_lib
from rewards import classifier as classifier_lib


@functools.lru_cache(maxsize=4)
def _classifier(workdir: str):
  module, params, _ = classifier_lib.load(workdir)
  return (jax.jit(classifier_lib.features_fn(module, params)),
          jax.jit(classifier_lib.log_probs_fn(module, params)))


@functools.lru_cache(maxsize=4)
def _cell_shape(workdir: str) -> tuple:
  return classifier_lib.load(workdir)[2]


def evaluate(images, classifier_dir: str, target=None, heldout_dir: str = '') -> dict:
  """Metrics of images [N, 8, 8, 1] against held-out digits of the target: a class, a tuple of
  classes (the even/odd task: a sample is right if its class is in the set), or None (all)."""
  features, log_probs = _classifier(classifier_dir)
  held_x, held_y = digits.load('heldout')
  classes = None if target is None else np.atleast_1d(np.asarray(target, np.int64))
  if classes is not None:
    held_x = held_x[np.isin(held_y, classes)]
  feats = np.asarray(features(np.asarray(images)))
  out = {'feature_diversity': metrics_lib.mean_pairwise_distance(feats)}
  if len(feats) > 1:  # a Gaussian fit needs two points
    out['frechet'] = metrics_lib.frechet_distance(feats, np.asarray(features(held_x)))
  if classes is None:
    return out
  predicted = np.argmax(np.asarray(log_probs(np.asarray(images))), -1)
  out['accuracy'] = float(np.mean(np.isin(predicted, classes)))
  if heldout_dir:
    _, heldout_log_probs = _classifier(heldout_dir)
    lp = np.asarray(heldout_log_probs(np.asarray(images)))
    out['heldout_accuracy'] = float(np.mean(np.isin(np.argmax(lp, -1), classes)))
    out['heldout_log_prob'] = float(np.mean(scipy.special.logsumexp(lp[:, classes], axis=-1)))
    if len(feats) > 1:
      out.update(_heldout_frechet(images, held_x, classes, heldout_dir))
  return out


def _heldout_frechet(images, held_x, classes, heldout_dir: str) -> dict:
  """Frechet distance on the held-out classifier's features of images [N, ...] to the held-out
  digits of `classes`, and the same for N real training digits of those classes (the floor a
  perfect sampler reaches at this N; fewer if the class has fewer)."""
  features, _ = _classifier(heldout_dir)
  ref = np.asarray(features(held_x))
  train_x, train_y = digits.load('train')
  real = train_x[np.isin(train_y, classes)]
  real = real[np.random.default_rng(0).permutation(len(real))[:len(images)]]
  frechet = lambda x: metrics_lib.frechet_distance(np.asarray(features(np.asarray(x))), ref)
  return {'frechet_heldout': frechet(images), 'frechet_heldout_floor': frechet(real)}


def evaluate_per_class(images, row_classes, classifier_dir: str, heldout_dir: str = '') -> dict:
  """evaluate() of each target class's images (images [B, ...] with row_classes [B]),
  averaged over the classes; `diversity` is the mean within-class pixel diversity."""
  row_classes = np.asarray(row_classes)
  per_class = []
  for c in np.unique(row_classes):
    group = np.asarray(images)[row_classes == c].reshape((-1,) + np.shape(images)[-3:])
    m = evaluate(group, classifier_dir, int(c), heldout_dir)
    m['diversity'] = metrics_lib.mean_pairwise_distance(group)
    per_class.append(m)
  return {k: float(np.mean([m[k] for m in per_class])) for k in per_class[0]}


def evaluate_grid(images, reward_cfg) -> dict:
  """Metrics of digit-grid images [N, H, W, 1] (models/digit_grid.py) under the prompt of a
  digit_count or digit_left_of reward: `success` by the searched classifier's argmax cell
  labels, `heldout_success` by the held-out classifier's (reward.heldout_checkpoint) when set."""
  from rewards import digit_grid  # pylint: disable=g-import-not-at-top
  images = np.asarray(images)
  out = {}
  for key, workdir in (('success', reward_cfg.get('checkpoint', '')),
                       ('heldout_success', reward_cfg.get('heldout_checkpoint', ''))):
    if not workdir:
      continue
    _, log_probs = _classifier(workdir)
    grid = digit_grid.grid_of(images.shape[1:], _cell_shape(workdir))
    lp = np.asarray(digit_grid.cell_log_probs(log_probs, images, grid))
    out[key] = float(np.mean(digit_grid.success(np.argmax(lp, -1), reward_cfg)))
  return out

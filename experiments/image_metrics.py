"""Image metrics through the digit classifier: Frechet distance on its penultimate features to
held-out digits, classifier accuracy, and diversity as mean pairwise feature distance."""

import functools

import jax
import numpy as np

from experiments import digits
from experiments import metrics as metrics_lib
from rewards import classifier as classifier_lib


@functools.lru_cache(maxsize=4)
def _classifier(workdir: str):
  module, params, _ = classifier_lib.load(workdir)
  return (jax.jit(classifier_lib.features_fn(module, params)),
          jax.jit(classifier_lib.log_probs_fn(module, params)))


def evaluate(images, classifier_dir: str, target_class=None) -> dict:
  """Metrics of images [N, 8, 8, 1] against held-out digits (of `target_class` if given)."""
  features, log_probs = _classifier(classifier_dir)
  held_x, held_y = digits.load('heldout')
  if target_class is not None:
    held_x = held_x[held_y == target_class]
  feats = np.asarray(features(np.asarray(images)))
  out = {'frechet': metrics_lib.frechet_distance(feats, np.asarray(features(held_x))),
         'feature_diversity': metrics_lib.mean_pairwise_distance(feats)}
  predicted = np.argmax(np.asarray(log_probs(np.asarray(images))), -1)
  if target_class is not None:
    out['accuracy'] = float(np.mean(predicted == target_class))
  return out

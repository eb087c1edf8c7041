"""A host-side image reward with the ImageReward/PickScore hook's signature, for the tests."""

import numpy as np


def prompt_length_plus_brightness(images, prompts):
  """uint8 images [N, H, W, 3], N prompts -> [N]: mean brightness in [0, 1] + prompt length."""
  assert images.dtype == np.uint8 and len(prompts) == len(images)
  return images.mean(axis=(1, 2, 3)) / 255.0 + np.array([len(p) for p in prompts])


def one_score_too_many(images, prompts):
  """A broken host reward: N + 1 scores for N images."""
  del prompts
  return np.zeros(len(images) + 1)

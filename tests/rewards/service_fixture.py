"""Scorer factories for the reward-service tests (python -m rewards.serve
--scorer=tests.rewards.service_fixture:NAME)."""

import time

import numpy as np


def brightness(delay_s: float = 0.0):
  """uint8 images [n, H, W, 3], n prompts -> mean brightness in [0, 1] + prompt length."""
  def score(images, prompts):
    assert images.dtype == np.uint8 and len(prompts) == len(images)
    time.sleep(delay_s)
    return images.mean(axis=(1, 2, 3)) / 255.0 + np.array([len(p) for p in prompts])
  return score


def linear(weights):
  """float32 points [n, d] -> x @ weights (prompts ignored)."""
  w = np.asarray(weights, np.float32)
  return lambda x, prompts: np.asarray(x, np.float32).reshape(len(x), -1) @ w


def fails_after(calls: int):
  """brightness() for the first `calls` calls, then a RuntimeError: a scorer that answers the
  probe before compiling and fails later."""
  score, count = brightness(), [0]

  def scorer(x, prompts):
    count[0] += 1
    if count[0] > calls:
      raise RuntimeError(f'scorer failure on call {count[0]}')
    return score(x, prompts)
  return scorer


def hangs_after(calls: int, marker: str):
  """brightness() for the first `calls` calls; then writes `marker` and hangs for 10 minutes
  (a service that stops answering mid-search)."""
  score, count = brightness(), [0]

  def scorer(x, prompts):
    count[0] += 1
    if count[0] > calls:
      with open(marker, 'w') as f:
        f.write('hanging')
      time.sleep(600)
    return score(x, prompts)
  return scorer

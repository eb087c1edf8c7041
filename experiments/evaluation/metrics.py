"""Two-sample statistics between point sets x [N, D] and y [M, D]."""

import warnings

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


def _mean_pairwise_distance(x, y):
  d2 = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
  return jnp.mean(jnp.sqrt(jnp.maximum(d2, 0.0)))


@jax.jit
def energy_distance(x, y):
  """2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic, >= 0; 0 iff same distribution)."""
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
  return (2.0 * _mean_pairwise_distance(x, y) - _mean_pairwise_distance(x, x)
          - _mean_pairwise_distance(y, y))


@jax.jit
def mmd_rbf(x, y, bandwidth=1.0):
  """Squared MMD (V-statistic) with the kernel exp(-|a - b|^2 / (2 bandwidth^2))."""
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)

  def k(a, b):
    d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return jnp.mean(jnp.exp(-jnp.maximum(d2, 0.0) / (2.0 * bandwidth**2)))
  return k(x, x) + k(y, y) - 2.0 * k(x, y)


def median_bandwidth(y) -> float:
  """The median heuristic's bandwidth: the median Euclidean distance between distinct rows of
  y [M, ...] (a reference set; the same bandwidth then scores every sample set against it)."""
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  d2 = np.sum(y**2, 1)[:, None] + np.sum(y**2, 1)[None, :] - 2.0 * y @ y.T
  upper = np.triu_indices(len(y), k=1)
  return float(np.median(np.sqrt(np.maximum(d2[upper], 0.0))))


def two_sample(name: str, fn, x, y):
  """fn(x, y) as a float, or None with a warning when either set or the value is not finite:
  a metric that cannot be computed is left out, never reported as a number."""
  x, y = np.asarray(x), np.asarray(y)
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    logging.warning('%s is left out: %s holds NaN or inf.', name,
                    'the samples' if not np.all(np.isfinite(x)) else 'the reference')
    return None
  value = float(fn(x, y))
  if not np.isfinite(value):
    logging.warning('%s is left out: it came out as %s.', name, value)
    return None
  return value


def frechet_distance(feats_a, feats_b) -> float:
  """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits of two feature
  sets [N, F] (FID's formula, on whatever features are given)."""
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():  # fewer points than features: singular, as expected
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
  covmean = np.real(covmean)
  value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * covmean)
  return float(max(value, 0.0))


def frechet_to_moments(x, mean, cov) -> float:
  """frechet_distance between the Gaussian fit of x [N, D] and a Gaussian of known mean [D]
  and covariance [D, D] (an exact target's own moments)."""
  a = np.asarray(x, np.float64)
  mu_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
  mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean = np.real(scipy.linalg.sqrtm(cov_a @ cov))
  value = np.sum((mu_a - mean) ** 2) + np.trace(cov_a + cov - 2.0 * covmean)
  return float(max(value, 0.0))


def mean_pairwise_distance(x) -> float:
  """Mean Euclidean distance between distinct rows of x [N, ...] (0 for N < 2)."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  if len(x) < 2:
    return 0.0
  sq = np.sum(x**2, 1)
  d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2.0 * x @ x.T, 0.0))
  return float(d.sum() / (len(x) * (len(x) - 1)))


def diversity(x0, batched: bool):
  """The `diversity` metric: mean pairwise distance among a search's outputs. x0 [N, ...] of
  one search, or [B, N, ...] of B searches (prompts, classes) when `batched`: then it is
  computed within each search and averaged, never across searches, so that a method is judged
  on what it returns for one prompt. None (left out) when no search has two outputs."""
  x0 = np.asarray(x0)
  groups = x0 if batched else x0[None]
  if groups.shape[1] < 2:
    return None
  return float(np.mean([mean_pairwise_distance(g) for g in groups]))

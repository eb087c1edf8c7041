"""Conversions between a backbone's prediction types, the score and the Tweedie estimate.

Prediction types (docs/math.md, section 3), at state x = alpha x0 + sigma eps on an interpolant:
  velocity  u = alpha_dot x0 + sigma_dot eps
  epsilon   eps
  x0        x0
  v         v = alpha eps - sigma x0
Any one of them, with x and t, determines the pair (x0_hat, eps_hat), and from it the rest.
`t` is broadcast against x: pass it shaped [B, 1, ...] (see `expand_time`) or as a scalar.
"""

import jax.numpy as jnp

PREDICTIONS = ('velocity', 'epsilon', 'x0', 'v')


def check_prediction(prediction: str) -> str:
  if prediction not in PREDICTIONS:
    raise ValueError(
        f'Unknown prediction type {prediction!r}; valid: {", ".join(PREDICTIONS)}.')
  return prediction


def expand_time(t, x):
  """Reshapes a per-sample time [B] (or a scalar) to broadcast against x [B, ...]."""
  t = jnp.asarray(t, x.dtype)
  if t.ndim == 0:
    return t
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def to_x0_eps(pred, x, t, interp, prediction: str):
  """(x0_hat, eps_hat) from a prediction of the given type at (x, t) on `interp`."""
  a, s = interp.alpha(t), interp.sigma(t)
  if prediction == 'epsilon':
    return (x - s * pred) / a, pred
  if prediction == 'x0':
    return pred, (x - a * pred) / s
  if prediction == 'v':
    norm = a**2 + s**2
    return (a * x - s * pred) / norm, (s * x + a * pred) / norm
  if prediction == 'velocity':
    a_dot, s_dot = interp.alpha_dot(t), interp.sigma_dot(t)
    det = a_dot * s - s_dot * a
    return (s * pred - s_dot * x) / det, (a_dot * x - a * pred) / det
  raise ValueError(check_prediction(prediction))


def from_x0_eps(x0, eps, t, interp, prediction: str):
  """The prediction of the given type whose (x0, eps) pair is the one given."""
  if prediction == 'epsilon':
    return eps
  if prediction == 'x0':
    return x0
  if prediction == 'v':
    return interp.alpha(t) * eps - interp.sigma(t) * x0
  if prediction == 'velocity':
    return interp.alpha_dot(t) * x0 + interp.sigma_dot(t) * eps
  raise ValueError(check_prediction(prediction))


def score_from_eps(eps, t, interp):
  """grad log p_t(x) = -eps_hat / sigma_t."""
  return -eps / interp.sigma(t)


def score_from_velocity(u, x, t, interp):
  """grad log p_t(x) = (alpha u - alpha_dot x) / (sigma (alpha_dot sigma - alpha sigma_dot))."""
  a, s = interp.alpha(t), interp.sigma(t)
  a_dot, s_dot = interp.alpha_dot(t), interp.sigma_dot(t)
  return (a * u - a_dot * x) / (s * (a_dot * s - a * s_dot))


def tweedie_from_velocity(u, x, t, interp):
  """x0_hat = (sigma u - sigma_dot x) / (alpha_dot sigma - sigma_dot alpha)."""
  return to_x0_eps(u, x, t, interp, 'velocity')[0]

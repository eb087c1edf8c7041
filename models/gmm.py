"""An analytic Gaussian-mixture backbone: the exact denoiser of a noised mixture.

Data p(x0) = sum_i w_i N(mu_i, diag(s_i^2)), means [K, D], stds [K] or [K, D], weights [K].
Under an interpolant x_t = alpha x0 + sigma eps the marginal is the mixture
sum_i w_i N(alpha mu_i, diag(alpha^2 s_i^2 + sigma^2)), and E[x0 | x_t] is the
responsibility-weighted mean of the per-component posterior means. The backbone returns its
prediction (velocity, epsilon, x0 or v) on any native interpolant, so it stands in for a
perfectly trained model.
"""

import jax
import jax.numpy as jnp
import numpy as np

from models.backbone import Backbone
from models.backbone import BackboneKind
from samplers import interpolants
from samplers import predictions


def make_params(means, stds, weights) -> dict:
  """Validates a mixture on the host; returns {'means' [K,D], 'stds' [K,D], 'log_weights' [K]}."""
  means = np.asarray(means, np.float32)
  if means.ndim == 1:
    means = means[:, None]
  if means.ndim != 2 or means.shape[0] == 0:
    raise ValueError(f'model.means must be a [K, D] nested tuple, got shape {means.shape}.')
  k, dim = means.shape
  if not np.all(np.isfinite(means)):
    raise ValueError(f'model.means must be finite numbers, got {means.tolist()}.')
  stds = np.asarray(stds, np.float32)
  if stds.ndim == 1 and stds.shape[0] == k:
    stds = np.repeat(stds[:, None], dim, axis=1)
  if stds.shape != (k, dim):
    raise ValueError(
        f'model.stds must have shape [{k}] or [{k}, {dim}] to match model.means [{k}, {dim}], '
        f'got {stds.shape}.')
  if not np.all((stds > 0) & np.isfinite(stds)):
    raise ValueError(f'model.stds must be positive finite numbers, got {stds.tolist()}.')
  weights = np.asarray(weights, np.float64)
  if weights.shape != (k,):
    raise ValueError(f'model.weights must have {k} entries (one per mean), got {weights.shape}.')
  # Written so that NaN fails it: NaN compares False.
  if not (np.all(weights >= 0) and abs(weights.sum() - 1.0) <= 1e-4):
    raise ValueError(
        f'model.weights must be finite, non-negative and sum to 1, got {weights.tolist()} '
        f'(sum {weights.sum():.6g}).')
  return {
      'means': jnp.asarray(means),
      'stds': jnp.asarray(stds),
      'log_weights': jnp.asarray(np.log(np.maximum(weights, 1e-38)), jnp.float32),
  }


def _component_terms(params, x, alpha, sigma):
  """Per-component log-likelihoods [B, K] and variances [B or 1, K, D] of x under p_t."""
  mean = alpha[..., None, :] * params['means']                    # [B|1, K, D]
  var = (alpha[..., None, :] * params['stds']) ** 2 + sigma[..., None, :] ** 2
  diff = x[:, None, :] - mean
  log_lik = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
  return log_lik + params['log_weights'], diff, var


def log_density(params, x, alpha, sigma):
  """log p_t(x) [B] of the noised mixture; x [B, D], alpha and sigma [B, 1] or scalars."""
  alpha = jnp.broadcast_to(alpha, x.shape[:1] + (1,))
  sigma = jnp.broadcast_to(sigma, x.shape[:1] + (1,))
  log_joint, _, _ = _component_terms(params, x, alpha, sigma)
  return jax.nn.logsumexp(log_joint, axis=-1)


def log_responsibilities(params, x, alpha, sigma):
  """log p(component k | x_t = x) [B, K] of the noised mixture (alpha = 1, sigma = 0: of the
  clean one); x [B, D], alpha and sigma [B, 1] or scalars."""
  alpha = jnp.broadcast_to(alpha, x.shape[:1] + (1,))
  sigma = jnp.broadcast_to(sigma, x.shape[:1] + (1,))
  log_joint, _, _ = _component_terms(params, x, alpha, sigma)
  return jax.nn.log_softmax(log_joint, axis=-1)


def posterior_mean(params, x, alpha, sigma):
  """E[x0 | x_t = x] [B, D] for the noised mixture."""
  alpha = jnp.broadcast_to(alpha, x.shape[:1] + (1,))
  sigma = jnp.broadcast_to(sigma, x.shape[:1] + (1,))
  log_joint, diff, var = _component_terms(params, x, alpha, sigma)
  resp = jax.nn.softmax(log_joint, axis=-1)                      # [B, K]
  gain = alpha[..., None, :] * params['stds'] ** 2 / var          # [B, K, D]
  comp_mean = params['means'] + gain * diff
  return jnp.einsum('bk,bkd->bd', resp, comp_mean)


def make_backbone(params, interpolant, prediction: str = 'velocity') -> Backbone:
  """The exact backbone of the mixture on its native `interpolant`, predicting `prediction`."""
  predictions.check_prediction(prediction)

  def apply_fn(p, x, t, cond=None):
    del cond
    t = predictions.expand_time(t, x)
    a, s = interpolant.alpha(t), interpolant.sigma(t)
    x0 = posterior_mean(p, x, a, s)
    _, eps = predictions.to_x0_eps(x0, x, t, interpolant, 'x0')
    return predictions.from_x0_eps(x0, eps, t, interpolant, prediction)

  dim = params['means'].shape[1]
  return Backbone(params=params, apply_fn=apply_fn, prediction=prediction,
                  interpolant=interpolant, data_shape=(dim,))


def sample(params, key, n: int):
  """n exact draws [n, D] from the mixture."""
  k_comp, k_noise = jax.random.split(key)
  comp = jax.random.categorical(k_comp, params['log_weights'], shape=(n,))
  z = jax.random.normal(k_noise, (n, params['means'].shape[1]))
  return params['means'][comp] + params['stds'][comp] * z


def tilt_linear(params, weights, bias: float, temperature: float) -> dict:
  """The mixture proportional to p(x) exp((w . x + b) / lambda), in closed form.

  Each component N(mu, diag(s^2)) shifts to mean mu + s^2 w / lambda; its log-weight gains
  w . mu / lambda + sum_d s_d^2 w_d^2 / (2 lambda^2).
  """
  del bias  # a constant shift of the reward does not change the tilted target
  w = jnp.asarray(weights, jnp.float32) / temperature
  var = params['stds'] ** 2
  log_w = params['log_weights'] + params['means'] @ w + 0.5 * jnp.sum(var * w**2, axis=-1)
  return {'means': params['means'] + var * w, 'stds': params['stds'],
          'log_weights': jax.nn.log_softmax(log_w)}


def tilt_gaussian(params, center, width: float, temperature: float) -> dict:
  """The mixture proportional to p(x) exp(-|x - c|^2 / (2 width^2 lambda)), in closed form.

  The tilt is a Gaussian of variance v = width^2 lambda around c; each component's product
  with it has precision 1/s^2 + 1/v, and its log-weight gains log N(mu; c, s^2 + v).
  """
  c = jnp.asarray(center, jnp.float32)
  v = width**2 * temperature
  var = params['stds'] ** 2
  new_var = 1.0 / (1.0 / var + 1.0 / v)
  new_mean = new_var * (params['means'] / var + c / v)
  total = var + v
  log_norm = -0.5 * jnp.sum((params['means'] - c) ** 2 / total + jnp.log(2 * jnp.pi * total),
                            axis=-1)
  return {'means': new_mean, 'stds': jnp.sqrt(new_var),
          'log_weights': jax.nn.log_softmax(params['log_weights'] + log_norm)}


def mixture(cfg) -> dict:
  """The mixture of model.means, model.stds, model.weights."""
  return make_params(cfg.means, cfg.stds, cfg.weights)


def build(cfg) -> Backbone:
  """model.name = gmm: the mixture's exact backbone on model.interpolant, predicting
  model.prediction."""
  return make_backbone(mixture(cfg), interpolants.from_config(cfg), cfg.prediction)


BACKBONE = BackboneKind(build, mixture=mixture, order=0)

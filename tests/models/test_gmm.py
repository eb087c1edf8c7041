import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import gmm
from samplers import predictions
from tests import helpers


@pytest.mark.parametrize('name', helpers.INTERPOLANT_NAMES)
def test_velocity_and_score_equal_autodiff_of_log_density(name):
  interp = helpers.interpolant(name)
  params = helpers.mixture_params()
  k0, k1 = jax.random.split(jax.random.key(0))
  t = jax.random.uniform(k0, (64,), minval=0.05, maxval=0.95)
  tx = predictions.expand_time(t, jnp.zeros((64, 2)))
  x = 3.0 * jax.random.normal(k1, (64, 2))
  a, s = interp.alpha(tx), interp.sigma(tx)

  # Autodiff route: score = grad log p_t, Tweedie x0 = (x + s^2 score) / a, eps = -s score.
  score = jax.vmap(jax.grad(lambda xi, ai, si: gmm.log_density(
      params, xi[None], ai[None], si[None])[0]))(x, a, s)
  x0_auto = (x + s**2 * score) / a
  eps_auto = -s * score
  u_auto = interp.alpha_dot(tx) * x0_auto + interp.sigma_dot(tx) * eps_auto

  backbone = gmm.make_backbone(params, interp, 'velocity')
  u = backbone(x, t)
  np.testing.assert_allclose(u, u_auto, rtol=2e-3, atol=2e-3)
  eps_model = gmm.make_backbone(params, interp, 'epsilon')(x, t)
  np.testing.assert_allclose(predictions.score_from_eps(eps_model, tx, interp), score,
                             rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(gmm.make_backbone(params, interp, 'x0')(x, t), x0_auto,
                             rtol=2e-3, atol=2e-3)


def test_exact_draws_have_mixture_moments():
  x = helpers.exact_draws(100_000)
  w, mu = np.array(helpers.WEIGHTS), np.array(helpers.MEANS)
  np.testing.assert_allclose(x.mean(0), w @ mu, atol=0.03)


@pytest.mark.parametrize('means,stds,weights,message', [
    (((0., 0.), (1., 1.)), (1., 1.), (0.5, 0.6), 'sum to 1'),
    (((0., 0.), (1., 1.)), (1., 1., 1.), (0.5, 0.5), r'model.stds must have shape \[2\]'),
    (((0., 0.), (1., 1.)), (1., 1.), (1.0,), 'model.weights must have 2 entries'),
    (((0., 0.), (1., 1.)), (1., -1.), (0.5, 0.5), 'positive'),
])
def test_bad_mixtures(means, stds, weights, message):
  with pytest.raises(ValueError, match=message):
    gmm.make_params(means, stds, weights)

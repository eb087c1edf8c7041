import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import predictions
from tests import helpers


@pytest.mark.parametrize('name', helpers.INTERPOLANT_NAMES)
@pytest.mark.parametrize('prediction', predictions.PREDICTIONS)
def test_round_trip(name, prediction):
  interp = helpers.interpolant(name)
  k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
  x0 = jax.random.normal(k0, (6, 3))
  eps = jax.random.normal(k1, (6, 3))
  t = predictions.expand_time(jax.random.uniform(k2, (6,), minval=0.05, maxval=0.95), x0)
  x = interp.alpha(t) * x0 + interp.sigma(t) * eps
  pred = predictions.from_x0_eps(x0, eps, t, interp, prediction)
  x0_hat, eps_hat = predictions.to_x0_eps(pred, x, t, interp, prediction)
  np.testing.assert_allclose(x0_hat, x0, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(eps_hat, eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ('linear', 'vp'))
def test_velocity_score_and_tweedie_formulas(name):
  interp = helpers.interpolant(name)
  k0, k1 = jax.random.split(jax.random.key(1))
  x0, eps = jax.random.normal(k0, (5, 2)), jax.random.normal(k1, (5, 2))
  t = jnp.float32(0.37)
  x = interp.alpha(t) * x0 + interp.sigma(t) * eps
  u = predictions.from_x0_eps(x0, eps, t, interp, 'velocity')
  np.testing.assert_allclose(predictions.score_from_velocity(u, x, t, interp),
                             predictions.score_from_eps(eps, t, interp), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(predictions.tweedie_from_velocity(u, x, t, interp), x0,
                             rtol=1e-4, atol=1e-5)
  if name == 'linear':  # x0_hat = x - t u
    np.testing.assert_allclose(x - t * u, x0, rtol=1e-4, atol=1e-5)


def test_unknown_prediction():
  with pytest.raises(ValueError, match='valid: velocity, epsilon, x0, v'):
    predictions.check_prediction('score')

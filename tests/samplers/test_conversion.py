import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import gmm
from samplers import conversion
from samplers import predictions
from samplers import sampler as sampler_lib
from tests import helpers

PAIRS = list(itertools.product(helpers.INTERPOLANT_NAMES, repeat=2))


def _points(n=48):
  k0, k1 = jax.random.split(jax.random.key(7))
  s = jax.random.uniform(k0, (n,), minval=0.06, maxval=0.94)
  return s, 2.5 * jax.random.normal(k1, (n, 2))


@pytest.mark.parametrize('source_name,target_name', PAIRS)
def test_converted_velocity_equals_target_velocity(source_name, target_name):
  """The converted-velocity formula (docs/math.md, section 4) on the source model == the exact target velocity."""
  source, target = helpers.interpolant(source_name), helpers.interpolant(target_name)
  params = helpers.mixture_params()
  source_model = gmm.make_backbone(params, source, 'velocity')
  target_model = gmm.make_backbone(params, target, 'velocity')
  s, x = _points()
  sx = predictions.expand_time(s, x)
  velocity_fn = lambda xx, tt: source_model(xx, tt.reshape(-1))
  converted = conversion.converted_velocity(velocity_fn, source, target, x, sx)
  exact = target_model(x, s)
  np.testing.assert_allclose(converted, exact, rtol=2e-4, atol=2e-4)
  # The sampler's route (through the shared (x0, eps) pair) agrees, for every prediction type.
  for prediction in predictions.PREDICTIONS:
    d = sampler_lib.denoise_at(gmm.make_backbone(params, source, prediction), target, x, s)
    np.testing.assert_allclose(d.velocity, exact, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('target_name', helpers.INTERPOLANT_NAMES)
def test_linear_source_closed_form_equals_general_form(target_name):
  target = helpers.interpolant(target_name)
  s = jnp.linspace(0.06, 0.94, 23)
  closed = conversion.snr_match_linear_source(target, s)
  general = conversion.snr_match_general(helpers.interpolant('linear'), target, s)
  for a, b in zip(closed, general):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)


def test_snr_match_maps_states():
  """x_bar_s = c_s x_{t_s}: alpha_bar = c alpha(t_s), sigma_bar = c sigma(t_s)."""
  source, target = helpers.interpolant('vp'), helpers.interpolant('cosine')
  s = jnp.linspace(0.1, 0.9, 9)
  m = conversion.snr_match(source, target, s)
  np.testing.assert_allclose(m.c * source.alpha(m.t), target.alpha(s), rtol=1e-4)
  np.testing.assert_allclose(m.c * source.sigma(m.t), target.sigma(s), rtol=1e-4)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import interpolants
from samplers.interpolants import discrete
from samplers import schedules
from tests import helpers

# Interior times, away from the discrete schedule's knots (its log-SNR is piecewise linear).
TIMES = jnp.array([0.0503, 0.2107, 0.4409, 0.6011, 0.8303, 0.9701])


@pytest.mark.parametrize('name', helpers.INTERPOLANT_NAMES)
def test_derivatives_match_autodiff(name):
  interp = helpers.interpolant(name)
  for fn, dfn in ((interp.alpha, interp.alpha_dot), (interp.sigma, interp.sigma_dot)):
    auto = jax.vmap(jax.grad(fn))(TIMES)
    np.testing.assert_allclose(dfn(TIMES), auto, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize('name', helpers.INTERPOLANT_NAMES)
def test_inverse_snr_inverts_snr(name):
  interp = helpers.interpolant(name)
  np.testing.assert_allclose(interp.inverse_snr(interp.snr(TIMES)), TIMES, rtol=1e-4, atol=1e-5)


def test_boundary_conventions():
  lin, vp, cos = (helpers.interpolant(n) for n in ('linear', 'vp', 'cosine'))
  for interp in (lin, vp, cos):
    np.testing.assert_allclose(interp.alpha(0.0), 1.0, atol=1e-6)
    np.testing.assert_allclose(interp.sigma(0.0), 0.0, atol=1e-6)
    np.testing.assert_allclose(interp.sigma(1.0), 1.0, atol=1e-4)
  np.testing.assert_allclose(vp.alpha(1.0), np.exp(-5.025), rtol=1e-5)  # not 0
  np.testing.assert_allclose(lin.alpha(1.0), 0.0, atol=1e-7)


def test_discrete_matches_ddpm_table_at_training_timesteps():
  interp = helpers.interpolant('discrete')
  ac = discrete.ddpm_alphas_cumprod()
  k = np.array([0, 17, 500, 999])
  t = k / 999.0
  np.testing.assert_allclose(interp.alpha(t) ** 2, ac[k], rtol=1e-4)
  np.testing.assert_allclose(interp.sigma(t) ** 2, 1 - ac[k], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(interp.timestep(t), k, atol=1e-3)


def test_a_discrete_schedule_trains_at_its_own_timesteps_and_compares_by_value():
  interp = discrete.build(beta_start=0.001, beta_end=0.07, num_train_timesteps=100)
  t = np.asarray(interp.training_times(jax.random.key(0), (4000,), 1e-3))
  np.testing.assert_allclose(t * 99, np.round(t * 99), atol=1e-4)   # k / 99, k integer
  assert t.min() == 0.0 and t.max() == 1.0 and len(np.unique(np.round(t * 99))) == 100
  uniform = np.asarray(helpers.interpolant('vp').training_times(jax.random.key(0), (4000,), 0.1))
  assert uniform.min() >= 0.1 and len(np.unique(uniform)) == 4000
  same = discrete.build(beta_start=0.001, beta_end=0.07, num_train_timesteps=100)
  assert same == interp and hash(same) == hash(interp) and same is not interp
  assert interp != discrete.build(beta_start=0.001, beta_end=0.02, num_train_timesteps=100)


@pytest.mark.parametrize('name', helpers.INTERPOLANT_NAMES)
def test_transition_composes_with_marginal(name):
  """x_t ~ N(a_t x0, s_t^2) moved by the forward kernel lands on N(a_t' x0, s_t'^2)."""
  interp = helpers.interpolant(name)
  t, t_next = 0.3, 0.7
  scale, std = interp.transition(t, t_next)
  np.testing.assert_allclose(scale * interp.alpha(t), interp.alpha(t_next), rtol=1e-5)
  np.testing.assert_allclose((scale * interp.sigma(t)) ** 2 + std**2, interp.sigma(t_next) ** 2,
                             rtol=1e-5)


def test_bad_names_and_schedules():
  with pytest.raises(ValueError, match='valid: linear, vp, cosine, discrete'):
    interpolants.get_interpolant('edm')
  with pytest.raises(ValueError, match='decrease strictly'):
    discrete.Discrete(alphas_cumprod=np.array([0.5, 0.6]))


def test_time_grids():
  uniform = schedules.time_grid('uniform', 4)
  np.testing.assert_allclose(uniform, [1.0, 0.75, 0.5, 0.25, 0.0])
  adaptive = schedules.time_grid('adaptive', 10)
  assert adaptive[0] == 1.0 and adaptive[-1] == 0.0
  steps = -np.diff(adaptive)
  assert np.all(steps > 0) and steps[0] < steps[-1]  # small steps near noise
  np.testing.assert_allclose(adaptive[3], np.sqrt(1 - 0.3**2), rtol=1e-6)
  for bad in (0, -3, 2.5):
    with pytest.raises(ValueError, match='positive integer'):
      schedules.time_grid('uniform', bad)
  with pytest.raises(ValueError, match='valid: uniform, adaptive'):
    schedules.time_grid('karras', 10)


def test_shifted_grids():
  """k t / (1 + (k - 1) t): diffusers' exp(mu) / (exp(mu) + 1/t - 1) at k = exp(mu)."""
  uniform = schedules.time_grid('uniform', 4)
  assert schedules.shift_grid(uniform, 1.0) is uniform
  mu = 0.7
  shifted = schedules.shift_grid(uniform, np.exp(mu))
  t = uniform[1:-1].astype(np.float64)
  np.testing.assert_allclose(shifted[1:-1], np.exp(mu) / (np.exp(mu) + 1 / t - 1), rtol=1e-6)
  assert shifted[0] == 1.0 and shifted[-1] == 0.0 and np.all(shifted[1:-1] > t)
  for bad in (0.0, -1.0, np.inf, np.nan):
    with pytest.raises(ValueError, match=r'must be a finite number > 0'):
      schedules.shift_grid(uniform, bad)


def test_diffusion_schedules():
  lin = helpers.interpolant('linear')
  t = jnp.array([0.25, 0.5])
  np.testing.assert_allclose(schedules.Diffusion('square', 3.0)(t, lin), 3 * t**2)
  np.testing.assert_allclose(schedules.Diffusion('linear', 2.0)(t, lin), 2 * t)
  np.testing.assert_allclose(schedules.Diffusion('sigma', 2.0)(t, lin), 2 * lin.sigma(t))
  np.testing.assert_allclose(schedules.Diffusion('constant', 0.5)(t, lin), [0.5, 0.5])
  np.testing.assert_allclose(schedules.Diffusion('sine', 1.0)(t, lin), np.sin(np.pi * t / 2),
                             rtol=1e-6)
  np.testing.assert_allclose(schedules.Diffusion('reverse_square', 1.0)(t, lin), [0.4375, 0.75])
  with pytest.raises(ValueError, match='valid: square'):
    schedules.Diffusion('cubic', 1.0)

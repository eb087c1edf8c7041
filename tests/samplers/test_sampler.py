import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.evaluation import metrics
from models import backbone as backbone_lib
from models import gmm
from samplers import sampler as sampler_lib
from samplers import schedules
from samplers.interpolants import discrete
from tests import helpers

N = 4000

# (target interpolant, sde, grid, ED threshold). Each samples a backbone native to the *other*
# interpolant, so the conversion is exercised. Correct formulas give ED <= 0.0016 on the uniform
# grid (0.0064 on the adaptive one, whose last level is t = 0.14); a factor 2 on g^2/2 gives
# >= 0.018, halving the noise >= 0.043, a flipped score sign >= 0.3.
CASES = {
    'linear-ode': ('linear', False, 'uniform', 0.006),
    'linear-sde': ('linear', True, 'uniform', 0.006),
    'vp-ode': ('vp', False, 'uniform', 0.006),
    'vp-sde': ('vp', True, 'uniform', 0.006),
    'vp-sde-adaptive': ('vp', True, 'adaptive', 0.012),
}


def _backbone_for(target):
  if target == 'linear':
    return gmm.make_backbone(helpers.mixture_params(), helpers.interpolant('vp'), 'epsilon')
  return gmm.make_backbone(helpers.mixture_params(), helpers.interpolant('linear'), 'velocity')


@functools.lru_cache(maxsize=None)
def _sample_fn(n):
  return jax.jit(lambda smp, key: smp.sample(key, n))


@pytest.mark.parametrize('case', CASES)
def test_samples_match_the_mixture(case):
  target, sde, grid, threshold = CASES[case]
  smp = sampler_lib.make_sampler(_backbone_for(target), helpers.interpolant(target), 100, sde,
                                 time_grid=grid)
  x = np.asarray(_sample_fn(N)(smp, jax.random.key(0)).x0)
  ref = helpers.exact_draws(N)
  w, mu = np.array(helpers.WEIGHTS), np.array(helpers.MEANS)
  np.testing.assert_allclose(x.mean(0), w @ mu, atol=0.12)
  np.testing.assert_allclose(x.var(0), ref.var(0), rtol=0.08)
  # Mode weights: nearest-mean assignment against the mixture weights.
  nearest = np.argmin(((x[:, None, :] - mu) ** 2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=3) / N, w, atol=0.03)
  assert float(metrics.energy_distance(x, ref)) < threshold


def _counting_backbone(counter):
  base = gmm.make_backbone(helpers.mixture_params(), helpers.interpolant('linear'), 'velocity')

  def apply_fn(params, x, t, cond=None):
    jax.debug.callback(lambda n: counter.append(int(n)), x.shape[0])
    return base.apply_fn(params, x, t, cond)
  return backbone_lib.Backbone(base.params, apply_fn, base.prediction, base.interpolant,
                               base.data_shape)


@pytest.mark.parametrize('sde', (False, True))
def test_nfe_count_is_exact(sde):
  counter = []
  smp = sampler_lib.make_sampler(_counting_backbone(counter), helpers.interpolant('vp'), 7, sde)
  result = jax.jit(lambda s, k: s.sample(k, 5))(smp, jax.random.key(0))
  jax.block_until_ready(result)
  assert sum(counter) == int(result.nfe) == 7 * 5
  assert len(counter) == 7


def test_same_seed_same_samples():
  smp = sampler_lib.make_sampler(_backbone_for('vp'), helpers.interpolant('vp'), 10, True)
  fn = _sample_fn(64)
  a, b = fn(smp, jax.random.key(3)).x0, fn(smp, jax.random.key(3)).x0
  c = fn(smp, jax.random.key(4)).x0
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_step_uses_the_callers_noise():
  """SDE step = ODE step + g^2/2 score term + g sqrt(dt) noise: linear in the given noise."""
  bb = _backbone_for('vp')
  sde = sampler_lib.make_sampler(bb, helpers.interpolant('vp'), 10, True)
  ode = sampler_lib.make_sampler(bb, helpers.interpolant('vp'), 10, False)
  x = jax.random.normal(jax.random.key(0), (8, 2))
  k = 2
  d = sde.denoise(x, k)
  z = jax.random.normal(jax.random.key(1), x.shape)
  t, t_next = sde.grid[k], sde.grid[k + 1]
  g = sde.diffusion(t, sde.interpolant)
  x_zero = sde.step(x, d, k, jnp.zeros_like(x))
  np.testing.assert_allclose(sde.step(x, d, k, z) - x_zero, g * jnp.sqrt(t - t_next) * z,
                             rtol=1e-5, atol=1e-6)
  score = -d.eps / sde.interpolant.sigma(t)
  np.testing.assert_allclose(x_zero - ode.step(x, d, k, z), 0.5 * g**2 * score * (t - t_next),
                             rtol=1e-4, atol=1e-5)


# The DTS paper's 2D schedule: linear betas from 0.001 to 0.07 over T = 100 timesteps.
DTS_SCHEDULE = dict(beta_start=0.001, beta_end=0.07, num_train_timesteps=100)


def _ddpm_sampler(sde, num_steps=100):
  interp = discrete.build(**DTS_SCHEDULE)
  bb = gmm.make_backbone(helpers.mixture_params(), interp, 'epsilon')
  return sampler_lib.make_sampler(bb, discrete.build(**DTS_SCHEDULE), num_steps, sde,
                                  time_grid='inclusive', kernel='ddpm')


@pytest.mark.parametrize('sde,threshold', ((True, 0.004), (False, 0.01)), ids=('ddpm', 'ddim'))
def test_the_ddpm_kernel_samples_the_mixture(sde, threshold):
  """DDPM's ancestral kernel (DDIM's without sde) on a discrete schedule's own 100 timesteps,
  with the mixture's exact eps: its samples are the mixture's. Measured ED: DDPM 0.0013, DDIM
  0.0065 (its deterministic steps are coarser on this schedule); DDPM with its noise scaled by
  1.4 gives 0.0128."""
  smp = _ddpm_sampler(sde)
  assert smp.interpolant == smp.backbone.interpolant   # no conversion between equal schedules
  x = np.asarray(_sample_fn(N)(smp, jax.random.key(0)).x0)
  ref = helpers.exact_draws(N)
  w, mu = np.array(helpers.WEIGHTS), np.array(helpers.MEANS)
  np.testing.assert_allclose(x.var(0), ref.var(0), rtol=0.08)
  nearest = np.argmin(((x[:, None, :] - mu) ** 2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=3) / N, w, atol=0.03)
  assert float(metrics.energy_distance(x, ref)) < threshold


def test_the_ddpm_step_is_diffusers_fixed_small_step():
  """Between adjacent timesteps k -> k - 1 the step is DDPMScheduler.step's (eps prediction,
  variance 'fixed_small', no clipping), transliterated from its formulas."""
  smp = _ddpm_sampler(True)
  betas = np.linspace(0.001, 0.07, 100)
  ac = np.cumprod(1 - betas)
  x = np.asarray(jax.random.normal(jax.random.key(0), (6, 2)), np.float64)
  eps = np.asarray(jax.random.normal(jax.random.key(1), (6, 2)), np.float64)
  for level in (0, 40, 98, 99):
    k = 99 - level                              # the level's training timestep
    prev = ac[k - 1] if k > 0 else 1.0
    x0 = (x - np.sqrt(1 - ac[k]) * eps) / np.sqrt(ac[k])
    mean = (np.sqrt(prev) * betas[k] / (1 - ac[k]) * x0
            + np.sqrt(1 - betas[k]) * (1 - prev) / (1 - ac[k]) * x)
    std = np.sqrt(max((1 - prev) / (1 - ac[k]) * betas[k], 0.0))
    d = sampler_lib.Denoised(jnp.asarray(x0, jnp.float32), jnp.asarray(eps, jnp.float32),
                             jnp.zeros((6, 2)))
    got_mean, got_std = smp.step_parts(jnp.asarray(x, jnp.float32), d, level)
    if level < 99:   # the last level returns the x0 estimate (diffusers' step from k = 0)
      np.testing.assert_allclose(got_mean, mean, rtol=2e-4, atol=2e-5)
      np.testing.assert_allclose(np.broadcast_to(got_std, x.shape), std, rtol=2e-4, atol=1e-6)
      np.testing.assert_allclose(smp.noise_scale(level), std, rtol=2e-4, atol=1e-6)
    else:
      np.testing.assert_allclose(std, 0.0)
  z = jax.random.normal(jax.random.key(2), (3, 2))
  np.testing.assert_array_equal(smp.noise_state(z), z)   # x_T ~ N(0, I), as DDPM draws it
  ddim = _ddpm_sampler(False)
  mean, scale = ddim.step_parts(jnp.asarray(x, jnp.float32), d, 40)
  a_s, s_s = ddim.interpolant.alpha(ddim.grid[41]), ddim.interpolant.sigma(ddim.grid[41])
  np.testing.assert_allclose(mean, a_s * x0 + s_s * eps, rtol=1e-4, atol=1e-5)
  assert float(np.max(scale)) == 0.0


def test_the_inclusive_grid_and_the_kernel_are_checked():
  np.testing.assert_allclose(schedules.time_grid('inclusive', 5), [1, 0.75, 0.5, 0.25, 0, 0])
  np.testing.assert_allclose(_ddpm_sampler(True).grid[:100] * 99, np.arange(99, -1, -1),
                             atol=1e-4)   # the schedule's own timesteps 99..0
  with pytest.raises(ValueError, match="time_grid 'inclusive' needs num_steps >= 2"):
    schedules.time_grid('inclusive', 1)
  with pytest.raises(ValueError, match='at t = 0, where the vp interpolant has sigma = 0'):
    sampler_lib.make_sampler(_backbone_for('vp'), helpers.interpolant('vp'), 10, True,
                             time_grid='inclusive')
  with pytest.raises(ValueError, match="Unknown sampler.kernel 'heun'; valid: euler, ddpm"):
    sampler_lib.make_sampler(_backbone_for('vp'), helpers.interpolant('vp'), 10, True,
                             kernel='heun')

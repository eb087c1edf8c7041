import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.evaluation import metrics
from models import backbone as backbone_lib
from models import gmm
from samplers import sampler as sampler_lib
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

"""Ψ-Sampler (search/psi.py) against a transliteration of its released code's control flow
(tests/search/psi_reference.py) on the same draws, reward and step; its sizing and refusals.
Its exactness with psi_weights=exact is in tests/search/test_exactness.py."""

import blackjax.smc.resampling as blackjax_resampling
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewards
import search
from configs import gmm2d
from experiments import problem as problem_lib
from rewards import host as rewards_host
from search import psi
from tests.search import psi_reference


def _config(budget, num_steps=5, **knobs):
  config = gmm2d.get_config('quick,psi')
  config.sampler.num_steps = num_steps
  config.search.update(budget=budget, **knobs)
  return config


@pytest.mark.parametrize('kernel', ['pcnl', 'mala'])
def test_the_search_follows_the_released_control_flow(kernel):
  m, c, burn, s = 5, 4, 3, 4
  # lambda = alpha = 0.5 and a gradient clip that binds: both branches of every rule run.
  config = _config(c * (1 + burn + s) + 8 * m, m, psi_kernel=kernel, psi_chains=c,
                   psi_burn_in=burn, psi_mcmc_steps=s, psi_grad_norm=0.5)
  problem = problem_lib.build(config)
  sampler, reward = problem.sampler, problem.reward
  lam = 0.5
  method_config = search.make_config(config.search, lam, m)
  assert method_config.num_particles == 8 and method_config.alpha == lam
  key = jax.random.key(11)
  result = jax.jit(lambda k: psi.run(k, sampler, reward, method_config))(key)
  assert int(result.nfe) == c * (1 + burn + s) + 8 * m

  init_key, mcmc_key, smc_key, _ = jax.random.split(key, 4)
  z0 = np.asarray(jax.random.normal(init_key, (c, 2)), np.float64)

  def draws(i):
    k_xi, k_u = jax.random.split(jax.random.fold_in(mcmc_key, i))
    return (np.asarray(jax.random.normal(k_xi, (c, 2))),
            np.asarray(jax.random.uniform(k_u, (c,))))

  evaluate = jax.jit(lambda z: psi.noise_scores(sampler, reward, method_config, z, None))

  def grad_reward(z):
    r, _, g = evaluate(jnp.asarray(z, jnp.float32))
    return np.asarray(g, np.float64), np.asarray(r, np.float64)

  samples = psi_reference.mcmc(kernel, z0, grad_reward, s, burn, 0.5, lam, draws)
  particles = psi_reference.chains_thinning(samples, 8, s, c)

  @jax.jit
  def reward_grad_at(x, level):
    _, r, _, g = psi.reward_and_grad(sampler, reward, x, level, None)
    return r, psi.clip(g, 0.5)

  @jax.jit
  def step_at(x, level):
    return sampler.step_parts(x, sampler.denoise(x, level), level)

  def noise(level):
    return np.asarray(jax.random.normal(jax.random.split(jax.random.fold_in(smc_key, level))[1],
                                        (8, 2)))

  def resample(level, weights, count):
    k_res = jax.random.split(jax.random.fold_in(smc_key, level))[0]
    return np.asarray(blackjax_resampling.systematic(k_res, jnp.asarray(weights), count))

  x = sampler.noise_state(jnp.asarray(particles, jnp.float32))
  as_np = lambda f: (lambda *a: tuple(np.asarray(v, np.float64) for v in f(
      jnp.asarray(a[0], jnp.float32), *a[1:])))
  best_x, best_r = psi_reference.smc(np.asarray(x, np.float64), as_np(reward_grad_at),
                                     as_np(step_at), noise, resample, m - 1, lam)
  final_x0 = np.asarray(sampler.denoise(jnp.asarray(best_x[None], jnp.float32), m - 1).x0[0])
  np.testing.assert_allclose(float(result.reward[0]), best_r, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(result.x0[0]), final_x0, rtol=1e-4, atol=1e-5)


def test_the_budget_sizes_the_chains_and_particles_as_the_reference():
  """Unset, two particles per chain: at the reference's 25 steps and 505 NFEs, its 5 chains of
  25 + 25 MCMC steps and 10 particles."""
  config = search.make_config(_config(505, 25).search, 1.0, 25)
  assert (config.chains, config.mcmc_nfe, config.num_particles) == (5, 255, 10)
  # 2 particles per chain at a stride of 25 // 2 = 12 kept steps, step-major indices.
  assert psi.thinned(config) == [0, 60, 1, 61, 2, 62, 3, 63, 4, 64]
  # Given chains: the particles take the rest, up to what the chains keep (5 x 25).
  config = search.make_config(_config(255 + 10 * 20, 10, psi_chains=5).search, 1.0, 10)
  assert config.num_particles == 20
  assert search.make_config(_config(10 ** 5, 10, psi_chains=5).search, 1.0,
                            10).num_particles == 125


@pytest.mark.parametrize('knobs,message', [
    (dict(psi_kernel='hmc'), "Unknown search.psi_kernel 'hmc'; valid: pcnl, mala"),
    (dict(psi_weights='fixed'), "Unknown search.psi_weights 'fixed'; valid: released, exact"),
    (dict(psi_step_size=0.0), 'psi_step_size must be a positive number'),
    (dict(psi_grad_norm=-1.0), 'psi_grad_norm must be a number >= 0'),
    (dict(guidance=True), 'psi guides its SMC proposals'),
    (dict(budget=260, psi_chains=5), 'too small for psi: it needs at least 275 NFEs'),
])
def test_bad_settings_are_named(knobs, message):
  config = _config(1000, 10)
  config.search.update(**knobs)
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    search.make_config(config.search, 1.0, 10)


def test_a_reward_without_gradients_is_refused_before_compiling():
  """A host callback (a reward service) has no gradient: refused in one line, by the problem
  before anything compiles and by psi.run itself when traced."""
  assert search.get_method('psi').needs_gradient
  host = rewards.stateless('host', rewards_host.host_reward(lambda x: np.asarray(x).sum(-1)))
  config = _config(1000, 10)
  problem = problem_lib.build(config)
  method_config = search.make_config(config.search, 1.0, 10)
  with pytest.raises(ValueError, match="search.method=psi needs a differentiable reward; 'host'"):
    jax.eval_shape(lambda k: psi.run(k, problem.sampler, host, method_config),
                   jax.random.key(0))


def test_the_flux_psi_paper_variant_is_the_released_configuration():
  """configs/flux.py:psi_paper is config/aesthetic.yaml: FLUX.1-schnell on the VP-SDE with
  g = 1 - (1 - t)^2, 25 uniform steps, alpha = lambda = 0.1, 5 pCNL chains of 25 + 25 steps
  with h = 0.5, 10 particles, the best one returned."""
  from configs import flux  # pylint: disable=g-import-not-at-top
  config = flux.get_config('psi_paper')
  assert (config.model.path, config.sampler.interpolant, config.sampler.sde,
          config.sampler.diffusion, config.sampler.diffusion_norm, config.sampler.time_grid,
          config.sampler.num_steps) == ('black-forest-labs/FLUX.1-schnell', 'vp', True,
                                        'reverse_square', 1.0, 'uniform', 25)
  method_config = search.make_config(config.search, config.reward.temperature, 25)
  assert (method_config.chains, method_config.burn_in, method_config.mcmc_steps,
          method_config.num_particles, method_config.alpha, method_config.step_size,
          method_config.grad_norm, method_config.kernel, method_config.common.output) == (
              5, 25, 25, 10, 0.1, 0.5, 4e-4, 'pcnl', 'best')

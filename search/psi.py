"""Ψ-Sampler (Yoon, Min, Yeo, Sung, NeurIPS 2025; KAIST-Visual-AI-Group/Psi-Sampler): SMC whose
initial particles come from MCMC on the reward-tilted prior at t = 1.

Stage 1, MCMC. C chains (psi_chains) sample the initial noise z (x_{t_0} = sigma_{t_0} z) from
  pi(z) ~ N(z; 0, I) exp(r(x0_hat(z)) / alpha),   alpha = psi_mcmc_temperature (unset: lambda),
with r(x0_hat(z)) the reward of the Tweedie estimate at t_0 and g its gradient in z (one NFE and
a VJP per chain and step; the gradient's per-particle RMS clipped to psi_grad_norm). The kernel
(psi_kernel) is the preconditioned Crank-Nicolson Langevin proposal
  z' = rho z + sqrt(1 - rho^2) (xi + sqrt(h) g / (2 alpha)),  rho = (1 - h/4) / (1 + h/4),
or MALA's z' = z + h/2 (g / alpha - z) + sqrt(h) xi, each with its Metropolis-Hastings test
(step size h = psi_step_size). After psi_burn_in steps the chains' next psi_mcmc_steps states are
kept, and the N SMC particles are thinned from them, N / C per chain at an even stride (the
reference's `chains_thinning`).

Stage 2, SMC. The N particles run the sampler's kernel shifted by the reward's gradient,
x' = mean + s^2 g_k / lambda + s z (s the step's noise scale; g_k the clipped gradient of the
Tweedie reward at level k), weighted by (r_{k+1} - r_k) / lambda times the base kernel's density
over the proposal's, and resampled when the ESS falls below psi_ess_threshold N. The output is
the best final particle (`best`), or draws by the final weights (`samples`).

psi_weights = released (the default) weights as the released code does: the initial weights
are r_0 / lambda although the particles already carry the tilt, an increment replaces the
weight instead of adding to it, and a level that does not resample moves the particles by the
last resampling's ancestors again. psi_weights = exact starts from weights r_0 (1/lambda -
1/alpha) (uniform when alpha = lambda), accumulates the increments, and leaves the particles
where they are between resamplings: with converged chains its final weights target
p*(x0) ~ p(x0) exp(r(x0) / lambda) (tests/search/test_exactness.py).

Budget: the chains cost C (1 + psi_burn_in + psi_mcmc_steps), the SMC N M with
N = min((B - that) // M, C psi_mcmc_steps); unset, C = B // (1 + psi_burn_in + psi_mcmc_steps +
2 M), the reference's two particles per chain (5 chains and 10 particles of 25 steps: 505 NFEs).
The reference's other defaults: 25 + 25 MCMC steps, h = 0.5, alpha = 0.1 = lambda, RMS clip
4e-4, ESS threshold 0.5. Departures in docs/methods.md.
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import blackjax.smc.ess as blackjax_ess
import jax
import jax.numpy as jnp

import rewards
from samplers.ground import sharding
from search import base
from search import levels

KERNELS = ('pcnl', 'mala')
WEIGHTS = ('released', 'exact')

METHOD = base.Method(
    knobs=dict(psi_kernel='pcnl',          # pcnl | mala
               psi_chains=base.Derived(int),  # C MCMC chains (unset: 2 particles per chain)
               psi_burn_in=25,             # MCMC steps discarded
               psi_mcmc_steps=25,          # MCMC steps kept, to thin the particles from
               psi_step_size=0.5,          # h
               psi_mcmc_temperature=base.Derived(float),  # alpha (unset: reward.temperature)
               psi_grad_norm=4e-4,         # clip of the gradient's per-particle RMS (0: none)
               psi_ess_threshold=0.5,      # SMC resamples when ESS < threshold * N
               psi_weights='released'),    # released | exact
    particle_field='num_particles', particle_source='search.budget and search.psi_*',
    output='best', order=3, needs_noise=True, needs_gradient=True)


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  num_particles: int    # N
  chains: int           # C
  burn_in: int
  mcmc_steps: int       # S
  kernel: str
  step_size: float      # h
  alpha: float          # the MCMC target's temperature
  grad_norm: float      # 0: unclipped
  ess_threshold: float
  weights: str

  @property
  def mcmc_nfe(self) -> int:
    return self.chains * (1 + self.burn_in + self.mcmc_steps)

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    if cfg.get('guidance', False):
      raise ValueError('psi guides its SMC proposals with the reward gradient itself; '
                       'set search.guidance=False.')
    kernel, weights = cfg.psi_kernel, cfg.psi_weights
    if kernel not in KERNELS:
      raise ValueError(f'Unknown search.psi_kernel {kernel!r}; valid: {", ".join(KERNELS)}.')
    if weights not in WEIGHTS:
      raise ValueError(f'Unknown search.psi_weights {weights!r}; valid: {", ".join(WEIGHTS)}.')
    burn, steps = int(cfg.psi_burn_in), int(cfg.psi_mcmc_steps)
    if cfg.get('psi_chains') is None:   # the reference's 10 particles from 5 chains
      chains = max(1, common.budget // (1 + burn + steps + 2 * num_steps))
    else:
      chains = int(cfg.psi_chains)
    if chains < 1 or burn < 0 or steps < 1:
      raise ValueError('search.psi_chains and search.psi_mcmc_steps must be >= 1 and '
                       f'search.psi_burn_in >= 0, got {chains}, {steps} and {burn}.')
    h = float(cfg.psi_step_size)
    if not (math.isfinite(h) and h > 0):
      raise ValueError(f'search.psi_step_size must be a positive number, got {h}.')
    alpha = cfg.get('psi_mcmc_temperature')
    alpha = float(temperature) if alpha is None else float(alpha)
    base.check_temperature(alpha)
    norm, threshold = float(cfg.psi_grad_norm), float(cfg.psi_ess_threshold)
    if not (math.isfinite(norm) and norm >= 0):
      raise ValueError(f'search.psi_grad_norm must be a number >= 0 (0: no clip), got {norm}.')
    if not 0.0 <= threshold <= 1.0:
      raise ValueError(f'search.psi_ess_threshold must lie in [0, 1], got {threshold}.')
    mcmc = chains * (1 + burn + steps)
    n = min((common.budget - mcmc) // num_steps, chains * steps)
    if n < 2:
      raise base.too_small(method.name, common.budget, mcmc + 2 * num_steps,
                           f'{chains} chain{"s" if chains != 1 else ""} of {1 + burn + steps} '
                           'MCMC evaluations and two '
                           f'SMC particles of {num_steps} steps')
    return cls(common, n, chains, burn, steps, kernel, h, alpha, norm, threshold, weights)


def thinned(config: Config) -> list:
  """Indices into the kept states [S * C] (step-major, as the reference concatenates them) of
  the N particles: per chain c, N // C (+1 for the first N % C chains) at stride S // that."""
  c, s, n = config.chains, config.mcmc_steps, config.num_particles
  out = []
  for chain in range(c):
    want = n // c + (1 if chain < n % c else 0)
    stride = max(1, s // want) if want else 1
    out += list(range(chain, chain + c * s, c))[::stride][:want]
  return out


def reward_and_grad(sampler, reward, x, k, cond):
  """(Denoised at level k, rewards [N] with invalid ones -inf, their invalid flags [N], the
  gradients [N, ...] of the rewards in x, NaN-free). Rows are independent, so the gradient of
  the rewards' sum is each row's own."""
  def total(xx):
    d = sampler.denoise(xx, k, cond)
    r = reward(d.x0, cond)
    return jnp.sum(jnp.where(jnp.isfinite(r), r, 0.0)), (d, r)

  g, (d, r) = jax.grad(total, has_aux=True)(x)
  r, bad = base.mark_invalid(r)
  return d, r, bad, jnp.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)


def clip(g, norm: float):
  """Each row of g scaled down to an RMS of at most `norm` (0: unchanged), as the reference's
  grad_norm."""
  if norm <= 0:
    return g
  rms = jnp.sqrt(jnp.mean(g.reshape(g.shape[0], -1) ** 2, axis=1))
  factor = jnp.where(rms > norm, norm / jnp.maximum(rms, 1e-30), 1.0)
  return g * factor.reshape((-1,) + (1,) * (g.ndim - 1))


def _dot(a, b):
  return jnp.sum((a * b).reshape(a.shape[0], -1), axis=1)


def log_joint(kernel: str, h: float, x_to, x_from, r_to, g_to):
  """log pi(x_to) + log q(x_from | x_to) up to terms symmetric in the pair, as the reference
  writes it (rewards and gradients already divided by alpha)."""
  if kernel == 'pcnl':
    rho = (1 - h / 4) / (1 + h / 4)
    return (r_to - h / 8 * _dot(g_to, g_to)
            + math.sqrt(h) / 2 * _dot((x_from - rho * x_to) / math.sqrt(1 - rho ** 2), g_to))
  return (r_to - h / 8 * (_dot(g_to, g_to) + _dot(x_to, x_to))
          + 0.5 * _dot(x_from - (1 - h / 2) * x_to, g_to))


def propose(kernel: str, h: float, z, g, xi):
  """The kernel's proposal from z with scaled gradient g (= grad / alpha) and noise xi."""
  if kernel == 'pcnl':
    rho = (1 - h / 4) / (1 + h / 4)
    return rho * z + math.sqrt(1 - rho ** 2) * (xi + 0.5 * math.sqrt(h) * g)
  return z + 0.5 * h * (g - z) + math.sqrt(h) * xi


class Chains(NamedTuple):
  """The MCMC chains (the scan's carry)."""
  z: jax.Array        # [C, ...] current noises
  r: jax.Array        # [C] their rewards (-inf: invalid)
  g: jax.Array        # [C, ...] their clipped gradients (in z)
  kept: jax.Array     # [S, C, ...] the states kept after the burn-in
  accepted: jax.Array  # [C] int32: accepted proposals


def noise_scores(sampler, reward, config: Config, z, cond):
  """Rewards [C], invalid flags and clipped gradients in z of noises z (x_{t_0} = sigma z)."""
  _, r, bad, g = reward_and_grad(sampler, reward, sampler.noise_state(z), 0, cond)
  return r, bad, clip(g * sampler.init_scale(), config.grad_norm)


def mcmc_step(chains: Chains, i, key, sampler, reward, config: Config, cond=None,
              keep: bool = False):
  """One Metropolis-Hastings step of every chain; with `keep`, its state is stored at
  kept[i - burn_in]."""
  h, a = config.step_size, config.alpha
  k_xi, k_u = jax.random.split(jax.random.fold_in(key, i))
  z, r, g = chains.z, chains.r, chains.g
  xi = sharding.rows(jax.random.normal(k_xi, z.shape, z.dtype))
  z_new = sharding.rows(propose(config.kernel, h, z, g / a, xi))
  r_new, bad, g_new = noise_scores(sampler, reward, config, z_new, cond)
  log_acc = (log_joint(config.kernel, h, z_new, z, r_new / a, g_new / a)
             - log_joint(config.kernel, h, z, z_new, r / a, g / a))
  # An invalid proposal (-inf) is never accepted; from an invalid state a valid one always is.
  log_acc = jnp.where(jnp.isfinite(r_new), jnp.where(jnp.isfinite(r), log_acc, jnp.inf),
                      -jnp.inf)
  u = jax.random.uniform(k_u, r.shape)
  accept = jnp.log(u) < log_acc
  pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
  z, r, g = sharding.rows((pick(z_new, z), jnp.where(accept, r_new, r), pick(g_new, g)))
  kept = chains.kept.at[i - config.burn_in].set(z) if keep else chains.kept
  return (Chains(z, r, g, kept, chains.accepted + accept.astype(jnp.int32)),
          levels.Report(r_new, bad))


class Particles(NamedTuple):
  """The SMC particles between levels (the scan's carry)."""
  x: jax.Array        # [N, ...]
  d: Any              # their evaluation
  r: jax.Array        # [N] rewards (-inf: invalid)
  g: jax.Array        # [N, ...] clipped reward gradients (in x)
  log_w: jax.Array    # [N]
  last_idx: jax.Array  # [N] the last resampling's ancestors (released weights)
  resampled: jax.Array  # bool: a resampling has happened
  resamples: jax.Array  # int32


def smc_init(z, sampler, reward, config: Config, cond=None):
  x = sampler.noise_state(z)
  d, r, bad, g = reward_and_grad(sampler, reward, x, 0, cond)
  g = clip(g, config.grad_norm)
  lam = config.common.temperature
  if config.weights == 'released':
    log_w = r / lam
  else:
    log_w = jnp.where(jnp.isfinite(r), r * (1 / lam - 1 / config.alpha), -jnp.inf)
  n = config.num_particles
  return (Particles(x, d, r, g, log_w, jnp.arange(n), jnp.zeros((), bool), jnp.int32(0)),
          levels.Report(r, bad))


def smc_step(state: Particles, k, key, sampler, reward, config: Config, cond=None,
             last: bool = False):
  """Level k -> k + 1: resample by the ESS rule, the gradient-shifted move, the weights."""
  n, lam = config.num_particles, config.common.temperature
  k_res, k_noise = jax.random.split(jax.random.fold_in(key, k))
  all_log_w = sharding.replicated(state.log_w)
  do = blackjax_ess.ess(all_log_w) < config.ess_threshold * n
  fresh = base.resample(k_res, all_log_w, n, config.common.resampling)
  if config.weights == 'released':   # the last resampling's ancestors, again
    idx = jnp.where(do, fresh, state.last_idx)
    move = do | state.resampled
  else:
    idx, move = fresh, do
  carried = (state.x, state.d, state.r, state.g)
  x, d, r, g = jax.lax.cond(move, lambda p: sharding.rows(base.take_rows(p, idx)),
                            lambda p: p, carried)
  prev = 0.0 if config.weights == 'released' else jnp.where(do, 0.0, state.log_w)
  mean, scale = sampler.step_parts(x, d, k)
  shift = scale ** 2 * g / lam
  noise = sharding.rows(jax.random.normal(k_noise, x.shape, x.dtype))
  x_new = mean + shift + scale * noise
  if last:
    d_new = sampler.denoise(x_new, k + 1, cond)
    r_new, bad = base.mark_invalid(reward(d_new.x0, cond))
    g_new = jnp.zeros_like(g)
  else:
    d_new, r_new, bad, g_new = reward_and_grad(sampler, reward, x_new, k + 1, cond)
    g_new = clip(g_new, config.grad_norm)
  # log p(x' | x) - log q(x' | x) = -(x' - mean) . g / lambda + s^2 |g|^2 / (2 lambda^2).
  correction = -_dot(x_new - mean, g) / lam + _dot(shift, g) / (2 * lam)
  inc = jnp.where(jnp.isfinite(r_new) & jnp.isfinite(r), (r_new - r) / lam + correction,
                  -jnp.inf)
  state = Particles(*sharding.rows((x_new, d_new, r_new, g_new, prev + inc)),
                    idx if config.weights == 'released' else state.last_idx,
                    state.resampled | do, state.resamples + do.astype(jnp.int32))
  return state, levels.Report(r_new, bad)


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  c, n, m, s, burn = (config.chains, config.num_particles, sampler.num_steps, config.mcmc_steps,
                      config.burn_in)
  base.check_divides('psi', {'search.psi_chains': c, 'SMC particles': n},
                     sharding.particle_axis_size())
  rewards.check_differentiable(reward, sampler.data_shape, cond, 'search.method=psi')
  init_key, mcmc_key, smc_key, out_key = jax.random.split(key, 4)
  z = sharding.rows(jax.random.normal(init_key, (c,) + tuple(sampler.data_shape)))
  r, bad, g = noise_scores(sampler, reward, config, z, cond)
  kept = jnp.zeros((s,) + z.shape, z.dtype)
  chains = Chains(z, r, g, kept, jnp.zeros((c,), jnp.int32))
  step = functools.partial(mcmc_step, key=mcmc_key, sampler=sampler, reward=reward,
                           config=config, cond=cond)
  segments = []
  if burn:
    segments.append(levels.Segment(step, jnp.arange(burn)))
  segments.append(levels.Segment(functools.partial(step, keep=True), jnp.arange(burn, burn + s)))

  def start_smc(chains, _):
    flat = chains.kept.reshape((s * c,) + chains.kept.shape[2:])
    z0 = sharding.rows(flat[jnp.asarray(thinned(config))])
    return smc_init(z0, sampler, reward, config, cond)

  segments.append(levels.Segment(start_smc, [0], unrolled=True))
  move = functools.partial(smc_step, key=smc_key, sampler=sampler, reward=reward,
                           config=config, cond=cond)
  if m > 2:
    segments.append(levels.Segment(move, jnp.arange(m - 2)))
  segments.append(levels.Segment(functools.partial(move, last=True), [m - 2], unrolled=True))

  def finish(state: Particles):
    return levels.Output(state.d.x0, state.r,
                         jnp.where(jnp.isfinite(state.r), state.log_w, -jnp.inf))

  costs = [c] + [c] * (burn + s) + [n] * m
  return levels.drive(out_key, config.common, chains, levels.Report(r, bad), segments, finish,
                      costs=costs, scored=sum(costs))[0]


def rows(config: Config) -> int:
  """The chains' kept states (C S), or the SMC particles where more."""
  return max(config.chains * config.mcmc_steps, config.num_particles)

"""A backbone turned into an ODE or SDE sampler on any interpolant (docs/math.md, sections 4-6).

Conventions: states x [B, *data_shape]; a time grid t_0 = 1 > ... > t_M = 0 indexed by the
level k; one `denoise` call is one NFE per row of x. Search methods use the three pieces:

  d = sampler.denoise(x, k, cond)        # one NFE: Tweedie x0, eps and velocity at t_k
  x_next = sampler.step(x, d, k, noise)  # Euler(-Maruyama) from t_k to t_{k+1}, caller's noise
  sampler.sample(key, n, cond)           # the plain sampler as one lax.scan
  sampler.integrate(x, cond, key)        # the same from given states x_{t_0}

so the velocity evaluated at a new state serves both its reward (through d.x0) and the drift of
the next step. The last level returns the Tweedie estimate at t_{M-1} instead of a final Euler
step: it is exact for the linear ODE (x - t u) and adds no noise at the data end.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from samplers import conversion
from samplers import interpolants
from samplers import predictions
from samplers import schedules
from samplers.ground import progress
from samplers.ground import sharding


class Denoised(NamedTuple):
  """One backbone evaluation, expressed on the sampler's interpolant at time t."""
  x0: jax.Array        # Tweedie estimate E[x0 | x_t]
  eps: jax.Array       # noise estimate
  velocity: jax.Array  # alpha_dot x0 + sigma_dot eps


class SampleResult(NamedTuple):
  x0: jax.Array   # [n, *data_shape]
  nfe: jax.Array  # int32 scalar: backbone evaluations x particles actually spent


def denoise_at(backbone, interp, x, s, cond=None) -> Denoised:
  """Evaluates the backbone once at target time s [B] (or scalar) and converts to `interp`.

  The backbone is queried at the SNR-matched native time t_s on the rescaled state x / c_s;
  its (x0, eps) pair is the same on both interpolants, so the target velocity is
  alpha_bar_dot x0 + sigma_bar_dot eps (equal to the converted-velocity formula, docs/math.md section 4).
  """
  s = jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1])
  s_x = predictions.expand_time(s, x)
  native = backbone.interpolant
  if native == interp:
    t, x_native = s, x
  else:
    match = conversion.snr_match(native, interp, s_x)
    t, x_native = match.t.reshape(s.shape), x / match.c
  pred = backbone(x_native, t, cond)
  x0, eps = predictions.to_x0_eps(
      pred, x_native, predictions.expand_time(t, x), native, backbone.prediction)
  return Denoised(x0, eps, predictions.from_x0_eps(x0, eps, s_x, interp, 'velocity'))


def euler_parts(interp, diffusion, sde, x, d: Denoised, t, t_next):
  """(mean, scale) of one Euler(-Maruyama) step: x' = mean + scale * z, with
  mean = x - (u - g^2/2 score) dt (the ODE's x - u dt if not sde) and scale = g sqrt(dt) (0 for
  the ODE), drift and g at the start. t and t_next broadcast against x (scalars, or [B, 1, ...])."""
  dt = t - t_next
  if not sde:
    return x - d.velocity * dt, jnp.zeros_like(dt)
  g = diffusion(t, interp)
  score = predictions.score_from_eps(d.eps, t, interp)
  drift = d.velocity - 0.5 * g**2 * score
  return x - drift * dt, euler_noise_scale(interp, diffusion, sde, t, t_next)


def euler_noise_scale(interp, diffusion, sde, t, t_next):
  """g(t) sqrt(t - t_next), the scale of an Euler-Maruyama step's noise (0 for the ODE)."""
  dt = t - t_next
  return diffusion(t, interp) * jnp.sqrt(dt) if sde else jnp.zeros_like(dt)


def ddpm_parts(interp, sde, x, d: Denoised, t, t_next):
  """(mean, scale) of DDPM's ancestral step from t to s = t_next < t: the Gaussian posterior
  q(x_s | x_t, x0 = d.x0), mean (alpha_s b^2 x0 + a sigma_s^2 x) / sigma_t^2 and variance
  sigma_s^2 b^2 / sigma_t^2 (diffusers' DDPMScheduler, variance 'fixed_small'), with (a, b) the
  forward transition from s to t (interp.transition: b^2 = beta_t of a discrete schedule
  between adjacent timesteps). Without sde it is DDIM's deterministic step
  alpha_s x0 + sigma_s eps."""
  a_s, s_s = interp.alpha(t_next), interp.sigma(t_next)
  if not sde:
    return a_s * d.x0 + s_s * d.eps, ddpm_noise_scale(interp, sde, t, t_next)
  a, b = interp.transition(t_next, t)
  mean = (a_s * b**2 * d.x0 + a * s_s**2 * x) / interp.sigma(t) ** 2
  return mean, ddpm_noise_scale(interp, sde, t, t_next)


def ddpm_noise_scale(interp, sde, t, t_next):
  """sigma_s b / sigma_t, the std of ddpm_parts' posterior (0 without sde)."""
  if not sde:
    return jnp.zeros_like(t - t_next)
  _, b = interp.transition(t_next, t)
  return interp.sigma(t_next) * b / interp.sigma(t)


def euler_step(interp, diffusion, sde, x, d: Denoised, t, t_next, noise):
  """x' = x - (u - g^2/2 score) dt + g sqrt(dt) z, drift and g at the start; ODE if not sde."""
  mean, scale = euler_parts(interp, diffusion, sde, x, d, t, t_next)
  return mean + scale * noise if sde else mean


def guided_denoise_at(backbone, interp, x, s, cond, reward, scale) -> Denoised:
  """DPS-style guidance: the score gains scale * grad_x r(x0_hat(x)) (one NFE, plus a VJP).

  The noise estimate becomes eps - sigma * scale * grad, and the velocity follows from the
  guided (x0, eps) pair; the returned x0 stays the model's own Tweedie estimate, which is what
  rewards in the loop score.
  """
  def tweedie(xx):
    d = denoise_at(backbone, interp, xx, s, cond)
    return d.x0, d

  x0, vjp, d = jax.vjp(tweedie, x, has_aux=True)
  grad_x = vjp(jax.grad(lambda z: jnp.sum(reward(z, cond)))(x0))[0]
  s_x = predictions.expand_time(jnp.broadcast_to(jnp.asarray(s, x.dtype), x.shape[:1]), x)
  eps = d.eps - interp.sigma(s_x) * scale * grad_x
  guided_x0, _ = predictions.to_x0_eps(eps, x, s_x, interp, 'epsilon')
  velocity = predictions.from_x0_eps(guided_x0, eps, s_x, interp, 'velocity')
  return Denoised(d.x0, eps, velocity)


@struct.dataclass
class Sampler:
  """Backbone + interpolant + grid + diffusion schedule + step kernel. A pytree: pass it to
  jitted code.

  kernel: 'euler' (Euler(-Maruyama) with diffusion g(t)) or 'ddpm' (DDPM's ancestral step, the
  Gaussian posterior given the Tweedie estimate; DDIM's deterministic step without sde; the
  initial state is N(0, I), as DDPM draws it, and `diffusion` is not used).

  With `guidance` set to a differentiable reward, every evaluation is DPS-guided with
  strength `guidance_scale` (= search.guidance_scale / lambda; docs/math.md, section 7).
  """
  backbone: Any  # models.backbone.Backbone
  grid: jax.Array  # [M + 1] float32, from 1 to 0
  interpolant: Any = struct.field(pytree_node=False)
  diffusion: schedules.Diffusion = struct.field(pytree_node=False)
  sde: bool = struct.field(pytree_node=False)
  guidance: Any = None  # a rewards.Reward (a pytree: its params are traced) or None
  guidance_scale: float = struct.field(pytree_node=False, default=0.0)
  kernel: str = struct.field(pytree_node=False, default='euler')

  @property
  def num_steps(self) -> int:
    return self.grid.shape[0] - 1

  @property
  def data_shape(self) -> tuple:
    return self.backbone.data_shape

  def init_noise(self, key, n: int):
    """x_{t_0} ~ N(0, sigma_{t_0}^2 I) [n, *data_shape] (alpha_1 x0 is dropped: alpha_1 ~ 0)."""
    return self.noise_state(jax.random.normal(key, (n,) + tuple(self.data_shape)))

  def init_scale(self):
    """The scale of the initial state x_{t_0} = scale * z: sigma_{t_0}, or 1 for the ddpm
    kernel (DDPM draws x_T ~ N(0, I))."""
    if self.kernel == 'ddpm':
      return jnp.float32(1.0)
    return self.interpolant.sigma(self.grid[0])

  def noise_state(self, z):
    """The state x_{t_0} = init_scale() z of standard normal noise z [n, *data_shape]."""
    return self.init_scale() * sharding.rows(z)

  def denoise(self, x, k, cond=None) -> Denoised:
    """One NFE per row of x at level k (time grid[k])."""
    if self.guidance is not None:
      return guided_denoise_at(self.backbone, self.interpolant, x, self.grid[k], cond,
                               self.guidance, self.guidance_scale)
    return denoise_at(self.backbone, self.interpolant, x, self.grid[k], cond)

  def step(self, x, d: Denoised, k, noise):
    """Moves x from level k to k + 1 using the evaluation d = denoise(x, k) and given noise;
    k is a scalar or one level per row [B]."""
    mean, scale = self.step_parts(x, d, k)
    return mean + scale * noise if self.sde else mean

  def step_parts(self, x, d: Denoised, k):
    """(mean, scale) with step(x, d, k, z) == mean + scale * z (samplers/sampler.py:
    euler_parts); scale broadcasts against x."""
    t, t_next = self._times(x, k)
    if self.kernel == 'ddpm':
      return ddpm_parts(self.interpolant, self.sde, x, d, t, t_next)
    return euler_parts(self.interpolant, self.diffusion, self.sde, x, d, t, t_next)

  def noise_scale(self, k):
    """The noise scale of step_parts at level k (a scalar or [B]), without an evaluation."""
    t, t_next = self.grid[k], self.grid[jnp.asarray(k) + 1]
    if self.kernel == 'ddpm':
      return ddpm_noise_scale(self.interpolant, self.sde, t, t_next)
    return euler_noise_scale(self.interpolant, self.diffusion, self.sde, t, t_next)

  def _times(self, x, k):
    return (predictions.expand_time(self.grid[k], x),
            predictions.expand_time(self.grid[jnp.asarray(k) + 1], x))

  def sample(self, key, n: int, cond=None) -> SampleResult:
    """Plain sampling of n particles: one lax.scan over the M levels, exactly M * n NFEs
    (reported to the host's progress line, samplers/ground/progress.py)."""
    init_key, noise_key = jax.random.split(key)
    x0 = self.integrate(self.init_noise(init_key, n), cond, noise_key,
                        on_level=lambda k: progress.tick((k + 1) * n, self.num_steps * n))
    return SampleResult(x0, jnp.asarray(self.num_steps * n, jnp.int32))

  def integrate(self, x, cond=None, noise_key=None, on_level=None):
    """The sample of states x_{t_0} [n, ...]: all M levels as one lax.scan (M NFEs per row),
    returning the Tweedie estimate at the last level. The SDE's noise at level k is drawn from
    fold_in(noise_key, k); without a key (for the ODE) no noise is drawn. on_level(k), if
    given, is called in the graph after level k."""
    def body(carry, k):
      x, _ = carry
      d = self.denoise(x, k, cond)
      if noise_key is None:
        noise = jnp.zeros_like(x)
      else:
        noise = jax.random.normal(jax.random.fold_in(noise_key, k), x.shape, x.dtype)
      if on_level is not None:
        on_level(k)
      return sharding.rows((self.step(x, d, k, noise), d.x0)), None

    (_, x0), _ = jax.lax.scan(body, (x, jnp.zeros_like(x)), jnp.arange(self.num_steps))
    return x0


KERNELS = ('euler', 'ddpm')
# `sampler` fields added after runs were recorded, at the value those runs used: a recorded run
# (a workdir's config.json, a sweep point) that lacks one is the same run (experiments/identity.py).
ADDED_FIELDS = {'kernel': 'euler'}


def make_sampler(backbone, interpolant, num_steps: int, sde: bool,
                 diffusion: str = 'square', diffusion_norm: float = 3.0,
                 time_grid: str = 'uniform', time_shift: float = 0.0,
                 kernel: str = 'euler') -> Sampler:
  """Validates the pieces on the host and builds the sampler (no compilation happens here).

  The grid is shifted by time_shift (schedules.shift_grid), or, at 0, by the backbone's own
  scheduler shift (1 for all but the flow backbones' schedulers); 'flow_match' ends where the
  backbone's scheduler does (Backbone.grid_end)."""
  predictions.check_prediction(backbone.prediction)
  if kernel not in KERNELS:
    raise ValueError(f'Unknown sampler.kernel {kernel!r}; valid: {", ".join(KERNELS)}.')
  shift = float(time_shift) if time_shift else backbone.time_shift
  grid = schedules.shift_grid(schedules.time_grid(time_grid, num_steps, backbone.grid_end), shift)
  if float(grid[num_steps - 1]) == 0.0 and not float(interpolant.sigma(0.0)) > 0.0:
    raise ValueError(
        f"time_grid {time_grid!r} evaluates the backbone at t = 0, where the "
        f"{interpolant.name} interpolant has sigma = 0; use it with the discrete interpolant "
        "(sigma_0 = sqrt(beta_0) > 0), or time_grid 'uniform'.")
  return Sampler(
      backbone=backbone,
      grid=jnp.asarray(grid),
      interpolant=interpolant,
      diffusion=schedules.Diffusion(diffusion, float(diffusion_norm)),
      sde=bool(sde),
      kernel=kernel,
  )


def from_config(cfg, backbone) -> Sampler:
  """A sampler from a `config.sampler` section: interpolant, sde, num_steps, diffusion,
  diffusion_norm, time_grid, time_shift, kernel."""

  num_steps = cfg.num_steps
  if not isinstance(num_steps, int) or num_steps <= 0:
    raise ValueError(f'sampler.num_steps must be a positive integer, got {num_steps!r}.')
  return make_sampler(backbone, interpolants.from_config(cfg), num_steps, bool(cfg.sde),
                      cfg.get('diffusion', 'square'), cfg.get('diffusion_norm', 3.0),
                      cfg.get('time_grid', 'uniform'), cfg.get('time_shift', 0.0),
                      cfg.get('kernel', 'euler'))

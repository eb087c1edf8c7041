"""Interpolant conversion: sample a model trained on one interpolant along another (docs/math.md, section 4).

Source (alpha_t, sigma_t), target (alpha_bar_s, sigma_bar_s). Matching signal-to-noise ratios,
t_s = rho^-1(rho_bar(s)) and c_s = sigma_bar_s / sigma_{t_s}, the target state is
x_bar_s = c_s x_{t_s}, and the converted velocity is

  u_bar_s(x_bar) = (c_dot_s / c_s) x_bar + c_s t_dot_s u_{t_s}(x_bar / c_s).

`SnrMatch` carries (t, c, t_dot, c_dot) for a batch of target times.
"""

from typing import Callable, NamedTuple

from samplers.interpolants import linear


class SnrMatch(NamedTuple):
  t: object      # source time t_s
  c: object      # scale c_s with x_bar_s = c_s * x_{t_s}
  t_dot: object  # d t_s / ds
  c_dot: object  # d c_s / ds


def snr_match(source, target, s) -> SnrMatch:
  """The general SNR-matching map (any source, any target)."""
  if isinstance(source, linear.Linear):
    return snr_match_linear_source(target, s)
  return snr_match_general(source, target, s)


def snr_match_general(source, target, s) -> SnrMatch:
  a_bar, s_bar = target.alpha(s), target.sigma(s)
  a_bar_dot, s_bar_dot = target.alpha_dot(s), target.sigma_dot(s)
  t = source.inverse_snr(a_bar / s_bar)
  a, sig = source.alpha(t), source.sigma(t)
  a_dot, sig_dot = source.alpha_dot(t), source.sigma_dot(t)
  c = s_bar / sig
  t_dot = sig**2 * (s_bar * a_bar_dot - a_bar * s_bar_dot) / (
      s_bar**2 * (sig * a_dot - a * sig_dot))
  c_dot = (sig * s_bar_dot - s_bar * sig_dot * t_dot) / sig**2
  return SnrMatch(t, c, t_dot, c_dot)


def snr_match_linear_source(target, s) -> SnrMatch:
  """Closed form for a linear source (alpha = 1 - t, sigma = t)."""
  a_bar, s_bar = target.alpha(s), target.sigma(s)
  a_bar_dot, s_bar_dot = target.alpha_dot(s), target.sigma_dot(s)
  c = a_bar + s_bar
  t = s_bar / c
  t_dot = (a_bar * s_bar_dot - s_bar * a_bar_dot) / c**2
  c_dot = a_bar_dot + s_bar_dot
  return SnrMatch(t, c, t_dot, c_dot)


def converted_velocity(velocity_fn: Callable, source, target, x_bar, s):
  """u_bar_s(x_bar) from a source velocity field `velocity_fn(x, t)`; s broadcasts with x."""
  m = snr_match(source, target, s)
  return (m.c_dot / m.c) * x_bar + m.c * m.t_dot * velocity_fn(x_bar / m.c, m.t)

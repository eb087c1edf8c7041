"""Config sections shared by the config files (ml_collections ConfigDicts only)."""

import ml_collections


def parse_variant(arg, known) -> set:
  """'a,b' -> {'a', 'b'}; rejects tokens not in `known` with the list of valid ones."""
  tokens = {t.strip() for t in (arg or '').split(',') if t.strip()}
  unknown = tokens - set(known)
  if unknown:
    raise ValueError(f'Unknown config variant(s) {sorted(unknown)}; valid: {", ".join(known)}.')
  return tokens


def sampler_config(**overrides) -> ml_collections.ConfigDict:
  """sampler.*: the target interpolant, ODE/SDE, steps, diffusion g(t), time grid."""
  cfg = ml_collections.ConfigDict(dict(
      interpolant='linear',       # linear | vp | cosine | discrete
      sde=False,                  # False: probability-flow ODE; True: reverse SDE
      num_steps=100,              # M levels; M NFEs per particle
      diffusion='square',         # g(t): square | linear | sigma | constant | sine
      diffusion_norm=3.0,         # g = norm * t^2 for 'square' (the RBF paper's 3 t^2)
      time_grid='uniform',        # uniform | adaptive
      num_samples=2048,           # plain sampling runs
  ))
  cfg.update(overrides)
  return cfg


def reward_config(**overrides) -> ml_collections.ConfigDict:
  """reward.*: the reward's name, its own fields, and the temperature lambda."""
  cfg = ml_collections.ConfigDict(dict(
      name='linear',              # linear | gaussian | quadratic | mode_weighting
      weights=(1.0, 0.0),         # linear: r = w . x + b
      bias=0.0,
      center=(0.0, 0.0),          # gaussian: r = -|x - c|^2 / (2 width^2)
      width=1.0,
      num_modes=8,                # mode_weighting: log sum_i exp(scale i) N(x; ring_i, std^2)
      radius=4.0,
      mode_std=0.3,
      mode_scale=1.5,
      temperature=1.0,            # lambda in p(x0) exp(r(x0) / lambda)
  ))
  cfg.update(overrides)
  return cfg

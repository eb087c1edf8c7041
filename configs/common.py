"""Config sections shared by the config files (ml_collections ConfigDicts)."""

import ml_collections
from ml_collections import config_dict

import rewards
import search


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
      time_grid='uniform',        # uniform | adaptive | inclusive (ends at t = 0: DDPM's) |
                                  # flow_match (diffusers' flow scheduler's: SD3's pipeline)
      kernel='euler',             # euler | ddpm (DDPM's ancestral step; DDIM without sde)
      time_shift=0.0,             # grid shift k t / (1 + (k - 1) t); 0: the backbone's own
      num_samples=2048,           # plain sampling runs
  ))
  cfg.update(overrides)
  return cfg


def reward_config(**overrides) -> ml_collections.ConfigDict:
  """reward.*: the fields every run reads (rewards/base.py: COMMON_FIELDS: the reward's name,
  the temperature lambda, held-out judges) and each reward's own fields with their defaults, as
  the rewards declare them (rewards/NAME.py: REWARD.fields)."""
  cfg = ml_collections.ConfigDict(dict(rewards.base.COMMON_FIELDS, **rewards.fields()))
  cfg.update(overrides)
  return cfg


def __getattr__(name):
  # METHODS: discovered from search/ (each method's own METHOD declaration), and the user's own
  # methods registered by main.py's --import (samplers/ground/registry.py: register).
  if name == 'METHODS':
    return search.METHODS
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')



def search_config(**overrides) -> ml_collections.ConfigDict:
  """search.*: the fields every method reads (search/base.py: COMMON_FIELDS: the method, the
  NFE budget, ...) and each method's own knobs with their defaults, as the methods declare
  them (search/NAME.py: METHOD.knobs).
  A knob the method derives from the other settings is an unset typed placeholder (None)."""
  cfg = ml_collections.ConfigDict(dict(search.base.COMMON_FIELDS))
  for field, default in search.knobs().items():
    cfg[field] = _typed(default)
  cfg.update(overrides)
  return cfg


def _typed(default):
  """A Derived knob becomes an unset placeholder of its type (--config.search.FIELD=VALUE
  parses to that type)."""
  if isinstance(default, search.base.Derived):
    return config_dict.placeholder(default.type)
  return default


def mesh_config(**overrides) -> ml_collections.ConfigDict:
  """mesh.*: the device mesh (experiments/mesh.py). `particles` splits particles or chains;
  an optional `model` axis splits large backbone parameters (FSDP). -1: all other devices."""
  cfg = ml_collections.ConfigDict(dict(axes=('particles',), shape=(-1,)))
  cfg.update(overrides)
  return cfg


def apply_method_variant(config, tokens) -> None:
  """A method token (`:smc`, `:dts`, ...) makes the run a `search` with that method and the
  method's own default output."""
  chosen = [t for t in tokens if t in search.METHODS]
  if len(chosen) > 1:
    raise ValueError(f'Pick one method per run, got {chosen}.')
  if chosen:
    config.experiment = 'search'
    config.search.method = chosen[0]
    config.search.output = search.get_method(chosen[0]).output


# The RBF paper's samplers (docs/math.md, section 5), as overrides of the `sampler` section.
SAMPLERS = {
    'linear_ode': dict(interpolant='linear', sde=False, time_grid='uniform'),
    'linear_sde': dict(interpolant='linear', sde=True, time_grid='uniform'),
    'vp_sde': dict(interpolant='vp', sde=True, time_grid='adaptive'),
    # The conversion ablation: Linear-SDE plus one of VP-SDE's two changes.
    'adaptive_time_only': dict(interpolant='linear', sde=True, time_grid='adaptive'),
    'adaptive_diffusion_only': dict(interpolant='vp', sde=True, time_grid='uniform'),
}


def sampler_presets(*names) -> dict:
  return {n: {'sampler': SAMPLERS[n]} for n in names}


def sweep_config(**overrides) -> ml_collections.ConfigDict:
  """sweep.*: the grid of experiments/sweep.py, its presets, table and figures."""
  cfg = ml_collections.ConfigDict(dict(
      title='',
      # Axes, in loop order; an empty one is not swept. method/budget/seed values set
      # search.method/search.budget/seed unless they name a preset; task/sampler values are
      # preset names.
      task=(), sampler=(), method=(), budget=(), seed=(0,),
      skip=(),    # ('axis=value,axis=value', ...): leave out the points with all those values
      presets=dict(task={}, sampler={}, method={}),
      table_metrics=('reward_mean', 'nfe'),
      plot=dict(metrics=(), x='budget', series='method', panel='', logx=True, logy=False),
      reach=(),   # ((a, b, metric[, 'lower']), ...): the NFE where a's metric reaches b's at b's
                # top budget ('lower': lower is better)
      paired=(),  # ((axis, a, b, metric), ...): a's metric minus b's at the same seeds (and the
                  # same other axis values), with its 95% interval and a verdict
  ))
  cfg.update(overrides)
  return cfg

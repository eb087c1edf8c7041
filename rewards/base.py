"""What every reward shares: the `Reward` pytree, its declaration, and field checks.

A reward is a module in rewards/ with
  REWARD = base.RewardKind(build=..., fields={...})   (or REWARDS, a tuple of named ones)
rewards/__init__.py discovers such modules (samplers/ground/registry.py); nothing else lists them.
"""

import dataclasses
import math
import types
from typing import Any, Callable, Mapping, Optional

from flax import struct


# The `reward` config fields every run reads, with their defaults (configs/common.py builds the
# section from these and the rewards' own fields, each read only by the rewards that declare it).
COMMON_FIELDS = dict(
    name='linear',              # any of rewards.names()
    temperature=1.0,            # lambda in p(x0) exp(r(x0) / lambda)
    heldout_checkpoint='',      # a second classifier that judges digit samples (held-out
                                # accuracy and log-probability) but is never searched against
    heldout=(),                 # rewards scored on the outputs after the search, never in it:
                                # ('NAME' or 'NAME,FIELD=VALUE,...', ...) (rewards/heldout.py)
)


# The `reward` fields each evaluation reads beyond the reward's own (experiments/identity.py
# keeps them in the identity of a run that is judged that way).
EVALUATION_FIELDS = dict(classifier=('checkpoint',), cells=())


@struct.dataclass
class Reward:
  """A batched reward r(x0 [N, ...], cond) -> [N]. Its `params` (network weights, or None) are
  pytree leaves, so a jitted search takes them as arguments instead of baking them in."""
  name: str = struct.field(pytree_node=False)
  fn: Callable = struct.field(pytree_node=False)  # (params, x0 [N, ...], cond) -> [N]
  params: Any = None
  # Host-side: prompts -> cond['reward_text'] [P, D], for rewards that compare with a prompt.
  encode_text: Optional[Callable] = struct.field(pytree_node=False, default=None)
  # Host-side: () -> None, raising ValueError; for host-callback rewards, whose output shape
  # only the host function itself can tell (called on a tiny batch before compiling).
  probe: Optional[Callable] = struct.field(pytree_node=False, default=None)

  def __call__(self, x0, cond=None):
    return self.fn(self.params, x0, cond)


def check_differentiable(reward, data_shape, cond=None, what='search.guidance') -> None:
  """Refuses, in one line, a reward that jax cannot differentiate (a host callback, an integer
  count): `what` names the setting that needs its gradient."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    jax.eval_shape(jax.grad(lambda x: reward(x, cond).sum()),
                   jax.ShapeDtypeStruct((2,) + tuple(data_shape), np.float32))
  except Exception as e:  # pylint: disable=broad-except
    name = getattr(reward, 'name', None)
    who = repr(name) if name else 'this reward'
    raise ValueError(f'{what} needs a differentiable reward; {who} is not '
                     f'({type(e).__name__}).') from None


def stateless(name: str, fn: Callable) -> Reward:
  """A reward without parameters from fn(x0, cond) -> [N]."""
  return Reward(name, lambda _, x0, cond: fn(x0, cond))


@dataclasses.dataclass(frozen=True)
class RewardKind:
  """A reward's declaration.

  build(cfg, shape, prompts) -> Reward: validates the reward's fields of `cfg` (the `reward`
    config section) against `shape`, the shape of one sample it scores: the backbone's data
    shape, or for an `images` reward the [H, W, C] images it is handed; prompts: the run's.
  fields: the `reward.*` config fields it reads, with their defaults; rewards may share a
    field only with the same default.
  images: it scores images in [0, 1]: on a latent backbone it is composed with the decoder, on
    a pixel backbone (values in [-1, 1]) the pixels are mapped to [0, 1] first.
  per_class: it reads cond['target_class'] (so reward.target_classes may batch over classes).
  target: cfg -> the class (int) or classes (tuple) it pulls towards, for digit metrics; None.
  mixture_tilt: (mixture params, cfg, temperature) -> the tilted mixture's params, where
    p(x) exp(r(x) / lambda) of a Gaussian mixture is again one (models/gmm.py); None.
  row_bytes: cfg -> the bytes its evaluation needs per scored row beyond the sample itself
    (experiments/search_memory.py), where that grows with a field; None: nothing to speak of.
  evaluation: which metrics judge the runs it scores (experiments/evaluation/recorders.py):
    'classifier' (digit images judged by the classifier at reward.checkpoint: Frechet
    distance, accuracy, diversity), 'cells' (a prompt about a grid of digits: success by its
    classifier and the held-out one), or '' (the backbone's declaration decides:
    models/backbone.py: BackboneKind.evaluation).
  order: its place in listings; name, module: filled in by the registry.
  """
  build: Callable[..., Reward]
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  images: bool = False
  per_class: bool = False
  target: Optional[Callable] = None
  mixture_tilt: Optional[Callable] = None
  row_bytes: Optional[Callable] = None
  evaluation: str = ''
  order: int = 100
  name: str = ''
  module: Optional[types.ModuleType] = dataclasses.field(default=None, compare=False)


def required(cfg, field: str, name: str):
  """cfg.field, which reward `name` cannot do without."""
  value = cfg.get(field, '')
  if not value:
    raise ValueError(f'reward {name} needs reward.{field}.')
  return value


def dimension(shape) -> int:
  """The number of coordinates of one sample of shape `shape`."""
  return math.prod(int(n) for n in shape)


def check_dim(field: str, value, shape) -> None:
  """A per-coordinate field must have one entry per data dimension."""
  data_dim = dimension(shape)
  if len(value) != data_dim:
    raise ValueError(f'{field} has {len(value)} entries but the data has dimension {data_dim}.')


def is_image_shape(shape) -> bool:
  return len(shape) == 3 and shape[-1] in (1, 3)


def check_images(name: str, shape) -> None:
  """For a reward that encodes the backbone's pixels (in [-1, 1]) as images."""
  if not is_image_shape(shape):
    raise ValueError(f'reward {name} encodes images [H, W, 1 or 3]; this backbone makes '
                     f'{tuple(shape)}.')


def positive(cfg, field: str, default: float) -> float:
  value = float(cfg.get(field, default))
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f'reward.{field} must be a positive finite number, got {value}.')
  return value

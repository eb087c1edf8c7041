"""The backbone record every model in `models/` produces, and a backbone's declaration.

A backbone is a pytree: its `params` are leaves (traced under jit), everything else is static.
`apply_fn(params, x, t, cond) -> prediction` takes states x [B, *data_shape] on the backbone's
native interpolant and native continuous times t [B] in [0, 1] (t = 1 noise, t = 0 data), and
returns its prediction [B, *data_shape] of type `prediction` (docs/math.md, section 3).

A latent backbone (Stable Diffusion) also carries a `Decoder` from its states to images, which
image rewards are composed with; for the others `decoder` is None.

A backbone is a module in models/ that declares `BACKBONE = BackboneKind(...)`; models/__init__.py
discovers such modules (samplers/ground/registry.py), and nothing else lists them.
"""

import dataclasses
import types
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Decoder:
  """apply_fn(params, z [N, *data_shape]) -> images [N, *output_shape] with values in [0, 1]."""
  params: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  output_shape: tuple = struct.field(pytree_node=False)

  def __call__(self, z):
    return self.apply_fn(self.params, z)


@struct.dataclass
class Backbone:
  params: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  prediction: str = struct.field(pytree_node=False)
  interpolant: Any = struct.field(pytree_node=False)
  data_shape: tuple = struct.field(pytree_node=False)
  decoder: Optional[Decoder] = None
  # The scheduler's timestep shift k (samplers/schedules.py: shift_grid) that samplers apply to
  # their time grid unless sampler.time_shift overrides it; 1: none.
  time_shift: float = struct.field(pytree_node=False, default=1.0)
  # The last nonzero time of the scheduler's default grid before its shift (diffusers'
  # FlowMatchEulerDiscreteScheduler's sigma_min), where time_grid 'flow_match' ends.
  grid_end: float = struct.field(pytree_node=False, default=1e-3)

  def __call__(self, x, t, cond=None):
    return self.apply_fn(self.params, x, t, cond)


def guided(run, scale: float, with_cond: tuple, without: tuple, dtype=None):
  """Classifier-free guidance in diffusers' convention, v(none) + s (v(cond) - v(none)), from
  ONE call run(*args) on the two argument tuples concatenated along the batch (each leaf of
  with_cond before its twin in without): both passes count as one NFE. `dtype`: the output is
  cast to it before the two halves are combined."""
  both = run(*jax.tree.map(lambda a, b: jnp.concatenate([a, b]), with_cond, without))
  both = both if dtype is None else both.astype(dtype)
  cond_out, null_out = jnp.split(both, 2)
  return null_out + scale * (cond_out - null_out)


@dataclasses.dataclass(frozen=True)
class BackboneKind:
  """A backbone's declaration.

  build(model_cfg) -> Backbone: validates the `model` config section and loads the backbone.
  trainable: the module also provides make_module(cfg, data_shape), init_params(module, key,
    data_shape) and make_backbone(module, params, cfg, data_shape), so experiments/train.py
    can train it and `build` restores it from the train run in model.checkpoint.
  read_prompts(config) -> [str], encode_prompts(model_cfg, prompts) -> [P, L, D] or a dict
    of [P, ...] arrays (merged into `cond`): a text-to-image backbone's prompts and their text
    conditioning; None for the others.
  mixture(model_cfg) -> params of the Gaussian mixture (models/gmm.py) that the backbone
    denoises exactly, where it is one: exact draws, and closed-form tilted targets with the
    rewards that declare one; None.
  evaluation: which metrics judge its samples where the reward declares none
    (rewards/base.py: RewardKind.evaluation): 'classifier' for digit images, judged by the
    digit classifier at reward.checkpoint whatever the reward searched; '' for none.
  measured_memory(model_cfg) -> str or None: the row of results/memory/model_memory.json
    (experiments/tools/model_memory.py) that measures this configuration at full size, so that
    a run is refused before its weights are read where the device cannot hold it; None.
  order: its place in listings; name, module: filled in by the registry.
  """
  build: Callable[..., Backbone]
  trainable: bool = False
  read_prompts: Optional[Callable] = None
  encode_prompts: Optional[Callable] = None
  mixture: Optional[Callable] = None
  evaluation: str = ''
  measured_memory: Optional[Callable] = None
  order: int = 100
  name: str = ''
  module: Optional[types.ModuleType] = dataclasses.field(default=None, compare=False)

  @property
  def text_to_image(self) -> bool:
    return self.read_prompts is not None

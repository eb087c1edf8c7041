"""The backbone record every model in `models/` produces.

A backbone is a pytree: its `params` are leaves (traced under jit), everything else is static.
`apply_fn(params, x, t, cond) -> prediction` takes states x [B, *data_shape] on the backbone's
native interpolant and native continuous times t [B] in [0, 1] (t = 1 noise, t = 0 data), and
returns its prediction [B, *data_shape] of type `prediction` (DESIGN.md section 1).

A latent backbone (Stable Diffusion) also carries a `Decoder` from its states to images, which
image rewards are composed with; for the others `decoder` is None.
"""

from typing import Any, Callable, Optional

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

  def __call__(self, x, t, cond=None):
    return self.apply_fn(self.params, x, t, cond)

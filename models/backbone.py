"""The backbone record every model in `models/` produces.

A backbone is a pytree: its `params` are leaves (traced under jit), everything else is static.
`apply_fn(params, x, t, cond) -> prediction` takes states x [B, *data_shape] on the backbone's
native interpolant and native continuous times t [B] in [0, 1] (t = 1 noise, t = 0 data), and
returns its prediction [B, *data_shape] of type `prediction` (DESIGN.md section 1).
"""

from typing import Any, Callable

from flax import struct


@struct.dataclass
class Backbone:
  params: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  prediction: str = struct.field(pytree_node=False)
  interpolant: Any = struct.field(pytree_node=False)
  data_shape: tuple = struct.field(pytree_node=False)

  def __call__(self, x, t, cond=None):
    return self.apply_fn(self.params, x, t, cond)

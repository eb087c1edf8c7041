"""Host-side checks of every number in a config, before anything is built or compiled.

Each experiment's own builders check ranges (a positive temperature, a budget a method can
spend); this module checks what no builder can see field by field: every float is finite and
representable in float32 (the device dtype) without overflowing or underflowing to zero or a
subnormal, and every integer fits int32 (the device's count dtype). Seeds are 64-bit.
A failure names the field, e.g. `model.means[1][0]`.
"""

import numbers

import ml_collections
import numpy as np

from samplers.ground.checks import check_float32
from samplers.ground.checks import check_positive_float32  # pylint: disable=unused-import

INT32_MAX = int(np.iinfo(np.int32).max)
SEED_LIMIT = 2**62   # jax.random.key takes 64-bit seeds; runs derive seed + 1, seed + 2
SEED_FIELDS = ('seed',)


def check_numbers(config, prefix: str = '') -> None:
  """Raises ValueError naming the first field whose number the device cannot represent."""
  for key, value in config.items():
    path = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      check_numbers(value, path + '.')
    else:
      _check_value(path, value, is_seed=key in SEED_FIELDS)


def _check_value(path: str, value, is_seed: bool = False) -> None:
  if value is None or isinstance(value, (str, bool, np.bool_)):
    return
  if isinstance(value, (tuple, list)):
    for i, item in enumerate(value):
      _check_value(f'{path}[{i}]', item)
    return
  if isinstance(value, numbers.Integral):
    limit = SEED_LIMIT if is_seed else INT32_MAX
    if not -limit <= int(value) <= limit:
      what = 'a seed' if is_seed else "the device's int32 counts"
      raise ValueError(f'{path}={value} is out of range for {what} (|value| <= {limit}).')
    return
  if isinstance(value, numbers.Real):
    check_float32(path, float(value))

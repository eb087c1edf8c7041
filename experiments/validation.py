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

INT32_MAX = int(np.iinfo(np.int32).max)
FLOAT32 = np.finfo(np.float32)
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


def check_float32(path: str, value: float) -> None:
  """A finite float32 number: no NaN or inf, no overflow, and no underflow to 0 or a
  subnormal (which XLA flushes to zero on CPU)."""
  if not np.isfinite(value):
    raise ValueError(f'{path} must be a finite number, got {value}.')
  if abs(value) > FLOAT32.max:
    raise ValueError(f'{path}={value} overflows float32 (largest {FLOAT32.max:.4g}).')
  if value != 0 and abs(value) < FLOAT32.tiny:
    raise ValueError(f'{path}={value} underflows float32 (smallest normal {FLOAT32.tiny:.4g}); '
                     'the device would compute with 0 in its place.')


def check_positive_float32(path: str, value) -> float:
  """A positive float32 number (see check_float32); returns it as a float."""
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f'{path} must be a number, got {value!r}.') from None
  check_float32(path, value)
  if not value > 0:
    raise ValueError(f'{path} must be positive, got {value}.')
  return value

"""Checks of host-side numbers before they reach the device (float32 values, int32 counts), in
the lowest layer so that every package can use them: experiments/validation.py applies them to
every number of a config, search/base.py to the temperature."""

import numpy as np

FLOAT32 = np.finfo(np.float32)


def check_float32(path: str, value: float) -> None:
  """A finite float32 number: no NaN or inf, no overflow, and no underflow to 0 or a
  subnormal (which XLA flushes to zero on CPU)."""
  if not np.isfinite(value):
    raise ValueError(f'{path} must be a finite number, got {value}.')
  if abs(value) > float(FLOAT32.max):
    raise ValueError(f'{path}={value} overflows float32 (largest {FLOAT32.max:.4g}).')
  if value != 0 and abs(value) < float(FLOAT32.tiny):
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

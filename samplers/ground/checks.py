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


def is_float_array(a) -> bool:
  """numpy floats and the ml_dtypes floats (bfloat16, float8: numpy kind 'V')."""
  return np.issubdtype(a.dtype, np.inexact) or a.dtype.name.startswith(('bfloat', 'float'))


def all_finite(array, chunk: int = 1 << 24) -> bool:
  """No NaN or inf in a float array (chunked, so a large tensor needs no large temporary)."""
  a = np.asarray(array)
  if not is_float_array(a):
    return True
  flat = a.reshape(-1)
  return all(bool(np.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.size, chunk))


def first_non_finite(named, flat: bool = False) -> str:
  """The name of the first array that holds NaN or inf, or '': of a pytree (named by its
  key paths), or with flat=True of a {name: array} dict (a safetensors file's tensors)."""
  if flat:
    items = named.items()
  else:
    import jax  # pylint: disable=g-import-not-at-top
    items = [(jax.tree_util.keystr(p), leaf)
             for p, leaf in jax.tree_util.tree_flatten_with_path(named)[0]]
  for name, value in items:
    if not all_finite(value):
      return str(name)
  return ''


def host_memory_bytes() -> int:
  """This host's physical RAM."""
  import os  # pylint: disable=g-import-not-at-top
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def check_host_bytes(what: str, need: int, hint: str) -> None:
  """Refuses (ValueError) host arrays of `need` bytes above half of this host's RAM."""
  have = host_memory_bytes()
  if need > have // 2:
    raise ValueError(f'{what} needs {need / 2**30:.2f} GiB of host memory, more than half of '
                     f'this host\'s {have / 2**30:.1f} GiB; {hint}.')


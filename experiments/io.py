"""The experiment contract's files (DESIGN.md section 7), written atomically into a workdir."""

import json
import os
import tempfile

import jax
import numpy as np


def is_writer() -> bool:
  """Only process 0 of a multi-process (jax.distributed) run writes files."""
  return jax.process_index() == 0


def _atomic_write(path: str, write) -> None:
  if not is_writer():
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj) -> None:
  _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def write_text(workdir: str, name: str, text: str) -> None:
  _atomic_write(os.path.join(workdir, name), lambda f: f.write(text.encode()))


def write_config(workdir: str, config) -> None:
  """config.json: the resolved ConfigDict."""
  write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))


def write_metrics(workdir: str, metrics: dict) -> None:
  """metrics.json: a flat object of numbers."""
  flat = {}
  for key, value in metrics.items():
    value = np.asarray(value)
    if value.shape != ():
      raise ValueError(f'metric {key!r} is not a scalar (shape {value.shape}).')
    flat[key] = value.item()
  write_json(os.path.join(workdir, 'metrics.json'), flat)


def write_samples(workdir: str, **arrays) -> None:
  """samples.npz with at least x0 [N, ...] and reward [N]."""
  missing = {'x0', 'reward'} - set(arrays)
  if missing:
    raise ValueError(f'samples.npz needs {sorted(missing)}.')
  _atomic_write(os.path.join(workdir, 'samples.npz'),
                lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))

"""The experiment contract's files (docs/contract.md), written atomically into a workdir that
one run at a time owns (config.json, DIR/.lock)."""

import contextlib
import json
import os
import tempfile

import filelock
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


def claim_workdir(workdir: str, config) -> None:
  """config.json: the resolved ConfigDict, written once. A workdir whose config.json is another
  run (experiments/identity.py: the fields the run reads differ) is refused before anything is
  written, naming the fields that differ, so a finished run is never relabelled or overwritten.

  The same run keeps its config.json as recorded, except that a sweep's grid may grow: a
  changed `sweep` section is then recorded (each finished point keeps its own identity,
  experiments/sweep.py)."""
  from experiments import identity  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config.to_json_best_effort())
  if os.path.isfile(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError) as e:
      raise ValueError(f'{path} exists but is unreadable ({e}); use another --workdir.') from None
    if not isinstance(old, dict):
      raise ValueError(f'{path} is not a config (a JSON object); use another --workdir.')
    diffs = identity.differences(identity.identity(old), identity.identity(new),
                                 'in the workdir')
    if diffs:
      raise ValueError(f'--workdir {workdir} holds another run (its config.json differs: '
                       f'{identity.summary(diffs)}). Use another --workdir, or rerun with the '
                       'config it was made with; nothing was written.')
    if same_json(old.get('sweep'), new.get('sweep')):
      return   # the same run, its config.json left as recorded
  write_json(path, new)


def same_json(a, b) -> bool:
  """Equal as JSON (tuples and lists alike)."""
  return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds DIR/.lock for the run (process 0 only): a second process on the same workdir stops
  at once with a clear error instead of racing the first. The kernel drops the lock when its
  holder dies, SIGKILL included, so a crashed run never blocks a rerun."""
  if not workdir:
    raise ValueError('--workdir is empty: give the directory for the run\'s outputs.')
  try:
    os.makedirs(workdir, exist_ok=True)
  except FileExistsError:
    raise ValueError(f'--workdir {workdir} exists and is not a directory.') from None
  except OSError as e:
    raise ValueError(f'cannot create --workdir {workdir}: {e.strerror or e}.') from None
  if not os.path.isdir(workdir):
    raise ValueError(f'--workdir {workdir} exists and is not a directory.')
  if not is_writer():
    yield
    return
  lock = filelock.FileLock(os.path.join(workdir, '.lock'), timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise ValueError(f'--workdir {workdir} is in use by another running process (it holds '
                     f'{os.path.join(workdir, ".lock")}); wait for it to finish or use another '
                     '--workdir.') from None
  except OSError as e:
    raise ValueError(f'cannot write to --workdir {workdir}: {e.strerror or e}.') from None
  try:
    yield
  finally:
    lock.release()


def write_metrics(workdir: str, metrics: dict) -> None:
  """metrics.json: a flat object of numbers."""
  flat = {}
  for key, value in metrics.items():
    value = np.asarray(value)
    if value.shape != ():
      raise ValueError(f'metric {key!r} is not a scalar (shape {value.shape}).')
    flat[key] = value.item()
  write_json(os.path.join(workdir, 'metrics.json'), flat)


def write_npz(path: str, arrays: dict) -> None:
  """An .npz of numpy arrays, atomically."""
  _atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def write_samples(workdir: str, **arrays) -> None:
  """samples.npz with at least x0 [N, ...] and reward [N]."""
  missing = {'x0', 'reward'} - set(arrays)
  if missing:
    raise ValueError(f'samples.npz needs {sorted(missing)}.')
  _atomic_write(os.path.join(workdir, 'samples.npz'),
                lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))

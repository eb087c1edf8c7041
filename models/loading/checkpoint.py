"""Orbax checkpoints of a training run, with integrity checks.

`params` and `opt_state` are saved as separate items, so a sampler can restore the parameters
alone and a resumed training run restores both. After orbax has committed a step, `save` writes
STEP/integrity.json: the SHA-256 and size of every file of the step, plus any JSON the caller
passes (`extra`: the training log). A step is intact when every file matches its manifest,
orbax restores it without error, and every restored array is finite. Restores take the newest
intact step and warn about each newer one they skip; with none intact they fail in one line
that names what is wrong (docs/reliability.md).
"""

import hashlib
import json
import os
import shutil
import time

from absl import logging
import jax
import orbax.checkpoint as ocp

from samplers.ground import checks

MANIFEST = 'integrity.json'


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A manager over DIR (created if missing); keeps the newest `max_to_keep` steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=('params', 'opt_state'))


def save(mngr: ocp.CheckpointManager, step: int, params, opt_state, extra=None) -> None:
  """Saves a step, waits for orbax to commit it, then writes its integrity manifest."""
  mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                          opt_state=ocp.args.StandardSave(opt_state)))
  mngr.wait_until_finished()
  if jax.process_index() == 0:
    write_manifest(_step_dir(mngr.directory, step), extra)


def _step_dir(directory, step: int) -> str:
  return os.path.join(str(directory), str(step))


def _files(step_dir: str):
  """Relative paths of every file in a step directory but the manifest, sorted."""
  out = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir)
      if rel != MANIFEST:
        out.append(rel)
  return sorted(out)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def write_manifest(step_dir: str, extra=None) -> None:
  files = {rel: {'sha256': _sha256(os.path.join(step_dir, rel)),
                 'bytes': os.path.getsize(os.path.join(step_dir, rel))}
           for rel in _files(step_dir)}
  body = json.dumps({'files': files, 'extra': extra}, indent=1, sort_keys=True)
  tmp = os.path.join(step_dir, f'.{MANIFEST}.tmp')
  with open(tmp, 'w') as f:
    f.write(body)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify(step_dir: str):
  """(problem or None, extra or None): what is wrong with the step's files against its
  manifest. A step without a manifest (saved by an older version, or killed between orbax's
  commit and the manifest) is not judged here; restoring it is the check."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.isfile(path):
    return None, None
  try:
    with open(path) as f:
      manifest = json.load(f)
    files = manifest['files']
  except (OSError, ValueError, KeyError, TypeError):
    return f'its manifest {path} is unreadable', None
  for rel, want in sorted(files.items()):
    full = os.path.join(step_dir, rel)
    if not os.path.isfile(full):
      return f'{full} is missing', None
    if os.path.getsize(full) != want['bytes']:
      return (f'{full} has {os.path.getsize(full)} bytes, {want["bytes"]} were saved '
              '(truncated or overwritten)'), None
    if _sha256(full) != want['sha256']:
      return f'{full} does not match its saved SHA-256 (corrupted)', None
  return None, manifest.get('extra')


def restore(mngr: ocp.CheckpointManager, step: int, params_like, opt_state_like=None):
  """Restores (params, opt_state) at `step` into the structures of the given templates,
  without integrity checks (restore_intact has them)."""
  abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  items = {'params': ocp.args.StandardRestore(abstract(params_like))}
  if opt_state_like is not None:
    items['opt_state'] = ocp.args.StandardRestore(abstract(opt_state_like))
  restored = mngr.restore(step, args=ocp.args.Composite(**items))
  return restored['params'], restored.get('opt_state') if opt_state_like is not None else None


def _first_non_finite(tree):
  return checks.first_non_finite(tree) or None


def _check_step(mngr, step: int, params_like, opt_state_like):
  """(problem, restored or None): restored = (params, opt_state, extra)."""
  problem, extra = verify(_step_dir(mngr.directory, step))
  if problem:
    return problem, None
  try:
    params, opt_state = restore(mngr, step, params_like, opt_state_like)
  except Exception as e:  # pylint: disable=broad-except
    # orbax, tensorstore and their decoders raise many types for damaged files.
    message = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
    return f'orbax could not restore it ({type(e).__name__}: {message})', None
  bad = _first_non_finite(params) or (
      None if opt_state is None else _first_non_finite(opt_state))
  if bad:
    return f'the restored array {bad} holds NaN or inf', None
  return None, (params, opt_state, extra)


def restore_intact(mngr: ocp.CheckpointManager, params_like, opt_state_like=None):
  """(params, opt_state, step, extra, skipped) from the newest intact step, or None if the
  directory has no step at all. skipped: [(step, problem)] for each newer step passed over
  (each also logged as a warning). With steps but none intact: ValueError naming each
  problem."""
  steps = sorted(mngr.all_steps(), reverse=True)
  if not steps:
    return None
  skipped = []
  for step in steps:
    problem, restored = _check_step(mngr, step, params_like, opt_state_like)
    if problem is None:
      params, opt_state, extra = restored
      return params, opt_state, step, extra, skipped
    logging.warning('checkpoint step %d in %s is damaged: %s; trying an older step.', step,
                    mngr.directory, problem)
    skipped.append((step, problem))
  raise ValueError(f'no intact checkpoint in {mngr.directory}: ' +
                   '; '.join(f'step {s}: {p}' for s, p in skipped) + '.')


def set_aside(directory: str, steps) -> str:
  """Moves damaged step directories out of DIR into DIR.damaged/STEP-TIME (never deleted:
  they are the user's files), so that training can save those step numbers again."""
  directory = os.path.abspath(directory)
  aside = directory.rstrip('/') + '.damaged'
  os.makedirs(aside, exist_ok=True)
  for step in steps:
    target = os.path.join(aside, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    shutil.move(_step_dir(directory, step), target)
    logging.warning('moved damaged checkpoint step %d to %s', step, target)
  return aside


def restore_latest_params(directory: str, params_like):
  """(params, step) of the newest intact step under DIR; a clear error if there is none."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'checkpoint directory {directory!r} does not exist.')
  found = restore_intact(manager(directory), params_like)
  if found is None:
    raise FileNotFoundError(f'no checkpoint found in {directory!r}.')
  params, _, step, _, _ = found
  return params, step

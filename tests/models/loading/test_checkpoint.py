"""Damaged checkpoints: flipped and truncated bytes, non-finite parameters, SIGKILL mid-save.

Each is detected (the integrity manifest's SHA-256, orbax's own read errors, finiteness), a
restore falls back to the newest intact step with a warning, and with no intact step it fails
in one line naming the file.
"""

import glob
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import train
from models.loading import checkpoint
from models.loading import trained as trained_lib
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _config():
  return helpers.tiny_train_config(num_steps=20)


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
  """A finished run with checkpoints at steps 10 and 20, and its parameters at each step."""
  workdir = str(tmp_path_factory.mktemp('trained'))
  metrics = train.run(_config(), workdir)
  template = trained_lib.load(workdir).params
  mngr = checkpoint.manager(os.path.join(workdir, 'checkpoints'))
  assert mngr.all_steps() == [10, 20]
  params = {s: checkpoint.restore(mngr, s, template)[0] for s in (10, 20)}
  return workdir, params, metrics


@pytest.fixture
def run_copy(trained_run, tmp_path):
  workdir, params, metrics = trained_run
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  return copy, params, metrics


def _largest_param_file(workdir, step):
  files = glob.glob(os.path.join(workdir, 'checkpoints', str(step), 'params', '**', '*'),
                    recursive=True)
  return max((f for f in files if os.path.isfile(f)), key=os.path.getsize)


def _flip(path, count=64):
  data = bytearray(open(path, 'rb').read())
  middle = len(data) // 2
  for i in range(middle, min(middle + count, len(data))):
    data[i] ^= 0xFF
  open(path, 'wb').write(bytes(data))


def _truncate(path):
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])


def _same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # orbax's failed read
@pytest.mark.parametrize('damage', (_flip, _truncate))
def test_a_damaged_newest_step_falls_back_to_the_older_one(run_copy, damage, caplog):
  workdir, params, _ = run_copy
  bad = _largest_param_file(workdir, 20)
  damage(bad)
  with caplog.at_level('WARNING'):
    backbone = trained_lib.load(workdir)
  _same(backbone.params, params[10])
  assert any('step 20' in r.getMessage() and bad in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # orbax's failed read
@pytest.mark.parametrize('damage,message', [
    (_flip, 'does not match its saved SHA-256'), (_truncate, 'truncated or overwritten')])
def test_no_intact_step_is_one_line_naming_the_file(run_copy, damage, message):
  workdir, _, _ = run_copy
  damaged = {step: _largest_param_file(workdir, step) for step in (10, 20)}
  for path in damaged.values():
    damage(path)
  with pytest.raises(ValueError, match=message) as info:
    trained_lib.load(workdir)
  text = str(info.value)
  assert '\n' not in text and damaged[20] in text and damaged[10] in text
  assert 'step 20' in text and 'step 10' in text


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')  # orbax's failed read
def test_orbax_read_errors_count_as_damage_without_a_manifest(run_copy):
  """A step saved without a manifest (an older version, or killed between orbax's commit and
  the manifest) is judged by restoring it: orbax's own error makes it damaged."""
  workdir, params, _ = run_copy
  os.remove(os.path.join(workdir, 'checkpoints', '20', checkpoint.MANIFEST))
  _truncate(_largest_param_file(workdir, 20))
  mngr = checkpoint.manager(os.path.join(workdir, 'checkpoints'))
  restored, _, step, _, skipped = checkpoint.restore_intact(mngr, params[10])
  assert step == 10 and skipped[0][0] == 20 and 'orbax could not restore it' in skipped[0][1]
  _same(restored, params[10])


def test_non_finite_parameters_count_as_damage(tmp_path):
  mngr = checkpoint.manager(str(tmp_path))
  good = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}
  checkpoint.save(mngr, 1, good, {'count': jnp.zeros(())})
  checkpoint.save(mngr, 2, {'w': jnp.full((3, 2), jnp.nan), 'b': jnp.zeros(2)},
                  {'count': jnp.zeros(())})
  restored, _, step, _, skipped = checkpoint.restore_intact(mngr, good)
  assert step == 1 and skipped == [(2, "the restored array ['w'] holds NaN or inf")]
  _same(restored, good)


def test_training_resumes_past_a_damaged_newest_step(run_copy, trained_run):
  """The newest step is damaged: training resumes from the older one, sets the damaged one
  aside (kept, not deleted) and ends with the parameters of the undamaged run, bitwise."""
  workdir, params, metrics = run_copy
  os.remove(os.path.join(workdir, 'metrics.json'))
  _flip(_largest_param_file(workdir, 20))
  resumed = train.run(_config(), workdir)
  _same(trained_lib.load(workdir).params, params[20])
  aside = glob.glob(os.path.join(workdir, 'checkpoints.damaged', '20-*'))
  assert len(aside) == 1 and os.path.isdir(aside[0])
  # The training log travels in the checkpoints: the metrics cover the whole run.
  assert resumed['first_chunk_loss'] == metrics['first_chunk_loss']
  assert resumed['final_loss'] == metrics['final_loss'] and resumed['num_segments'] == 2


_KILL_DURING_SAVE = textwrap.dedent('''
    import glob, os, signal, sys, threading, time
    sys.path.insert(0, {root!r})
    from experiments import train
    from tests.models.loading.test_checkpoint import _config

    def kill_when_a_save_is_half_written():
      # orbax writes a step into STEP.orbax-checkpoint-tmp-* and renames it when complete.
      while True:
        if glob.glob(os.path.join({workdir!r}, 'checkpoints', '20.orbax-checkpoint-tmp*')):
          os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.0005)

    threading.Thread(target=kill_when_a_save_is_half_written, daemon=True).start()
    train.run(_config(), {workdir!r})
''')


def test_sigkill_mid_save_then_rerun_completes_the_same_run(trained_run, tmp_path):
  _, params, metrics = trained_run
  workdir = str(tmp_path / 'killed')
  script = _KILL_DURING_SAVE.format(root=ROOT, workdir=workdir)
  proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == -9, proc.stderr[-2000:]
  mngr = checkpoint.manager(os.path.join(workdir, 'checkpoints'))
  assert mngr.all_steps() == [10]  # step 20 was never committed
  resumed = train.run(_config(), workdir)
  _same(trained_lib.load(workdir).params, params[20])
  assert resumed['final_loss'] == metrics['final_loss']


def test_diverged_training_saves_nothing(tmp_path):
  """A finite learning rate so large that the loss turns NaN or inf: the run stops with an
  error at that chunk and saves no non-finite state; the last good step stays."""
  config = _config()
  config.train.update(learning_rate=1e30, schedule='constant')
  with pytest.raises(ValueError, match='training diverged: the mean loss of steps 1..10'):
    train.run(config, str(tmp_path))
  assert checkpoint.manager(str(tmp_path / 'checkpoints')).all_steps() == []
  assert not os.path.exists(tmp_path / 'metrics.json')

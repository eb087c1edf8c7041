"""A workdir belongs to one run: a different config is refused before anything is written,
and a second process on the same workdir stops at once (docs/reliability.md)."""

import filecmp
import os
import shutil
import signal
import subprocess
import sys

import pytest

import experiments
from configs import gmm2d
from experiments import files
from models.loading import trained as trained_lib
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_config():
  return helpers.tiny_train_config(num_steps=10)


@pytest.fixture(scope='module')
def train_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('train'))
  experiments.get_experiment('train')(_train_config(), workdir)
  return workdir


@pytest.fixture
def train_copy(train_dir, tmp_path):
  copy = str(tmp_path / 'train')
  shutil.copytree(train_dir, copy)
  shutil.copy(os.path.join(copy, 'config.json'), str(tmp_path / 'config.before.json'))
  return copy


def _unchanged(workdir):
  before = os.path.join(os.path.dirname(workdir), 'config.before.json')
  return filecmp.cmp(os.path.join(workdir, 'config.json'), before, shallow=False)


@pytest.mark.parametrize('change,message', [
    (lambda c: c.update(seed=7), r'seed: 0 \(in the workdir\) -> 7 \(now\)'),
    (lambda c: c.data.update(name='moons'), "data.name: 'gmm' .* -> 'moons'"),
    (lambda c: c.model.update(hidden=64), r'model.hidden: 32 \(in the workdir\) -> 64'),
])
def test_training_into_another_runs_workdir_is_refused(train_copy, change, message):
  config = _train_config()
  change(config)
  with pytest.raises(ValueError, match='holds another run .*' + message):
    experiments.get_experiment('train')(config, train_copy)
  assert _unchanged(train_copy)
  trained_lib.load(train_copy)  # the trained model still loads


def test_sampling_into_a_training_workdir_is_refused(train_copy):
  config = _train_config()
  config.experiment = 'sample'
  config.model.checkpoint = train_copy
  with pytest.raises(ValueError, match="experiment: 'train' .* -> 'sample'"):
    experiments.get_experiment('sample')(config, train_copy)
  assert _unchanged(train_copy)
  assert not os.path.exists(os.path.join(train_copy, 'samples.npz'))


def test_the_same_config_reruns_into_its_own_workdir(train_copy):
  metrics = experiments.get_experiment('train')(_train_config(), train_copy)
  assert metrics['num_steps'] == 10 and _unchanged(train_copy)


def test_a_second_run_on_a_locked_workdir_stops_at_once(tmp_path):
  workdir = str(tmp_path)
  with files.workdir_lock(workdir):
    with pytest.raises(ValueError, match='is in use by another running process'):
      experiments.get_experiment('sample')(gmm2d.get_config('quick,sample'), workdir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))


_HOLD_LOCK = '''
import sys, time
sys.path.insert(0, {root!r})
from experiments import files
with files.workdir_lock({workdir!r}):
  print('locked', flush=True)
  time.sleep(120)
'''


def test_two_processes_on_one_workdir_and_a_killed_holder(tmp_path):
  """A process holds the workdir (as a running sweep does); main.py in a second process
  stops with one line and exit code 2. After SIGKILL of the holder the workdir is free."""
  workdir = str(tmp_path / 'sweep')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK.format(root=ROOT, workdir=workdir)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    proc = subprocess.run(
        [sys.executable, 'main.py', '--config=configs/figures/dts_2d.py:quick',
         f'--workdir={workdir}'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
    assert len(lines) == 1 and 'in use by another running process' in lines[0]
    assert 'Traceback' not in proc.stderr
    assert not os.path.exists(os.path.join(workdir, 'points'))  # nothing was computed
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with files.workdir_lock(workdir):  # the kernel released the dead holder's lock
    pass


def test_a_run_is_the_fields_it_reads():
  """experiments/identity.py: an SMC run is not changed by RBF's knobs or another reward's
  fields, and is changed by its own."""
  from experiments import identity  # pylint: disable=g-import-not-at-top
  config = gmm2d.get_config('smc')
  ident = identity.identity(config)
  assert 'ess_threshold' in ident['search'] and 'rbf_variant' not in ident['search']
  assert 'weights' in ident['reward'] and 'address' not in ident['reward']
  other = gmm2d.get_config('smc')
  other.search.rbf_variant = 'literal'
  other.reward.timeout = 5.0
  assert identity.digest(identity.identity(other)) == identity.digest(ident)
  other.search.ess_threshold = 1.0
  assert identity.differences(ident, identity.identity(other)) == [
      'search.ess_threshold: 0.5 (recorded) -> 1.0 (now)']
  # A held-out reward reads its own fields from the reward section.
  other = gmm2d.get_config('smc')
  other.reward.heldout = ('service',)
  assert 'address' in identity.identity(other)['reward']
  # Digit images are judged by the classifier at reward.checkpoint whatever reward searched
  # (the U-Net declares that evaluation): that field stays part of a compressibility run.
  from configs import digits  # pylint: disable=g-import-not-at-top
  config = digits.get_config('svdd')
  config.reward.name = 'compressibility'
  assert 'checkpoint' in identity.identity(config)['reward']
  config.model.name = 'mlp'
  assert 'checkpoint' not in identity.identity(config)['reward']


def test_fields_added_to_the_project_since_a_run_do_not_make_it_another_run(tmp_path):
  """A workdir recorded before a search, reward or sampler field existed (a common one, a knob of
  its method, the sampler's kernel) is the same run while that field holds its declared default; set to anything else,
  it makes another run, named in the error."""
  import json  # pylint: disable=g-import-not-at-top
  config = gmm2d.get_config('smc')
  old = json.loads(config.to_json_best_effort())
  for section, field in (('reward', 'heldout'), ('reward', 'timeout'),
                         ('search', 'particle_schedule'), ('search', 'rbf_variant'),
                         ('sampler', 'kernel')):
    del old[section][field]
  old['search']['a_knob_no_method_has_now'] = 3
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps(old))
  files.claim_workdir(str(workdir), config)
  assert json.loads((workdir / 'config.json').read_text()) == old   # left as recorded
  config.search.particle_schedule = 'linear'
  with pytest.raises(ValueError, match=r"search.particle_schedule: absent \(in the workdir\) -> "
                                       r"'linear' \(now\)"):
    files.claim_workdir(str(workdir), config)
  config = gmm2d.get_config('smc')
  config.sampler.time_shift = 2.0
  with pytest.raises(ValueError, match=r'sampler.time_shift: 0.0 \(in the workdir\) -> 2.0'):
    files.claim_workdir(str(workdir), config)
  config = gmm2d.get_config('smc')   # a sampler field added since (samplers/sampler.py)
  config.sampler.kernel = 'ddpm'
  with pytest.raises(ValueError, match=r"sampler.kernel: absent \(in the workdir\) -> 'ddpm'"):
    files.claim_workdir(str(workdir), config)


def test_a_sweep_point_recorded_before_a_knob_existed_is_the_same_run(tmp_path):
  """Records hold the identity of their point; a knob that the record lacks counts as its
  declared default, and a record of another run stops the sweep naming the field."""
  import json  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  config = gmm2d.get_config('smc')
  config.sweep = common.sweep_config(seed=(0,))
  point = sweep.grid(config)[0]
  records = tmp_path / 'points'
  records.mkdir()
  ident = json.loads(json.dumps(point.identity))
  del ident['search']['particle_schedule']
  record = {'identity': ident, 'identity_sha256': 'older'}
  (records / f'{point.name}.json').write_text(json.dumps(record))
  assert sweep._read_record(str(records), point) == record   # pylint: disable=protected-access
  ident['search']['ess_threshold'] = 1.0
  (records / f'{point.name}.json').write_text(json.dumps(dict(record, identity=ident)))
  with pytest.raises(ValueError, match=r'another run .*search.ess_threshold: 1.0 \(recorded\) '
                                       r'-> 0.5 \(now\)'):
    sweep._read_record(str(records), point)   # pylint: disable=protected-access
  (records / f'{point.name}.json').write_text(json.dumps({'config_sha256': 'abc'}))
  with pytest.raises(ValueError, match='recorded before run identities.*migrate_records'):
    sweep._read_record(str(records), point)   # pylint: disable=protected-access

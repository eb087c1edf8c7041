"""main.py end to end, in a subprocess, as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def test_sample_run_with_overrides_writes_the_contract(tmp_path):
  proc = _main('--config=configs/gmm2d.py:quick,sample', f'--workdir={tmp_path}',
               '--config.sampler.interpolant=vp', '--config.sampler.sde=true',
               '--config.model.means=((0.,1.),(3.,4.))', '--config.model.stds=(0.5,0.5)',
               '--config.model.weights=(0.5,0.5)', '--config.reward.name=gaussian')
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = json.load(open(tmp_path / 'config.json'))
  assert config['sampler']['interpolant'] == 'vp' and config['sampler']['sde'] is True
  assert config['model']['means'] == [[0.0, 1.0], [3.0, 4.0]]
  metrics = json.load(open(tmp_path / 'metrics.json'))
  assert metrics['nfe'] == 10 * 256  # quick: 10 steps x 256 samples
  for key in ('reward_mean', 'reward_max', 'wall_s', 'compile_s', 'energy_distance'):
    assert isinstance(metrics[key], float)
  samples = np.load(tmp_path / 'samples.npz')
  assert samples['x0'].shape == (256, 2) and samples['reward'].shape == (256,)
  # The samples sit on the two overridden modes.
  near = np.minimum(np.linalg.norm(samples['x0'] - [0, 1], axis=1),
                    np.linalg.norm(samples['x0'] - [3, 4], axis=1))
  assert np.mean(near < 2.0) > 0.97
  assert (tmp_path / 'samples.png').stat().st_size > 0


@pytest.mark.parametrize('args,message', [
    # Validation before compiling.
    (['--config.sampler.interpolant=edm'], 'valid: linear, vp, cosine, discrete'),
    (['--config.experiment=finetune'], 'valid: train, train_classifier, sample, search, compare'),
    (['--config.search.budget=5'], 'too small for svdd: it needs at least 40 NFEs'),
    (['--config.model.weights=(0.2,0.2,0.2)'], 'sum to 1'),
    (['--config.search.budget=3000000000'], 'search.budget=3000000000 is out of range'),
    # Flag parsing.
    (['--config.search.nosuch=1'], 'unknown config field --config.search.nosuch'),
    (['--config.search.budget=abc'], 'flag --config.search.budget=abc: invalid literal'),
    (['--config=configs/nope.py'], 'config file configs/nope.py does not exist'),
    (['--config=configs/gmm2d.py:huge'], "Unknown config variant(s) ['huge']"),
    (['--workdir='], '--workdir is empty'),
    (['stray'], "unexpected arguments ['stray']"),
    # The workdir.
    (['--workdir={file}'], 'exists and is not a directory'),
    (['--workdir={file}/run'], 'cannot create --workdir'),
])
def test_every_user_error_is_one_error_line_and_exit_code_2(tmp_path, args, message):
  (tmp_path / 'a_file').write_text('')
  fill = lambda a: a.format(file=tmp_path / 'a_file')
  args = [fill(a) for a in args]
  base = ['--config=configs/gmm2d.py:quick,svdd', f'--workdir={tmp_path / "run"}']
  given = {a.split('=')[0] for a in args}
  proc = _main(*[a for a in base if a.split('=')[0] not in given], *args)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr


def _main_in_process(tmp_path, monkeypatch, raising):
  """Runs main.main in this process with an experiment that raises `raising`."""
  import experiments  # pylint: disable=g-import-not-at-top
  import main  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  def broken(name):
    def run(config, workdir):
      raise raising
    return run
  monkeypatch.setattr(experiments, 'get_experiment', broken)
  flags.FLAGS([sys.argv[0], f'--config={ROOT}/configs/gmm2d.py:quick,sample',
               f'--workdir={tmp_path}'])
  try:
    with pytest.raises(SystemExit) as info:
      main.main([sys.argv[0]])
  finally:
    flags.FLAGS.unparse_flags()
  return info.value.code


def test_a_bug_prints_a_one_line_summary_before_its_traceback(tmp_path, monkeypatch, capsys):
  code = _main_in_process(tmp_path, monkeypatch, TypeError('boom'))
  err = capsys.readouterr().err
  assert code == 1
  assert err.splitlines()[0] == 'error: internal error, please report it: TypeError: boom'
  assert 'Traceback (most recent call last)' in err


@pytest.mark.parametrize('raising,code,message', [
    (PermissionError(13, 'Permission denied', '/data/run'), 2,
     'error: /data/run: Permission denied'),
    (OverflowError('Python int too large to convert to C long'), 2,
     'error: Python int too large to convert to C long'),
    (KeyboardInterrupt(), 130, 'error: interrupted'),
])
def test_environment_errors_and_interrupts_are_one_line(tmp_path, monkeypatch, capsys, raising,
                                                         code, message):
  assert _main_in_process(tmp_path, monkeypatch, raising) == code
  err = capsys.readouterr().err
  assert err.startswith(message) and 'Traceback' not in err and len(err.splitlines()) == 1


def test_search_run_writes_the_contract(tmp_path):
  proc = _main('--config=configs/gmm2d.py:quick,rbf', f'--workdir={tmp_path}',
               '--config.search.rbf_parallel=2', '--config.reward.temperature=0.5')
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.load(open(tmp_path / 'metrics.json'))
  for key in ('nfe', 'reward_mean', 'reward_max', 'wall_s', 'compile_s', 'num_invalid'):
    assert key in metrics
  assert 0 < metrics['nfe'] <= 640
  samples = np.load(tmp_path / 'samples.npz')
  # rbf's own output is `best`, as the released code returns: the best chain's sample.
  assert samples['x0'].shape == (1, 2) and samples['reward'].shape == (1,)
  assert samples['trace_nfe'].shape == samples['trace_best'].shape


def test_a_users_own_method_reward_and_backbone_run_by_import_path(tmp_path):
  """Modules outside the checkout, as a user writes them (here copies of the project's bon,
  linear reward and Gaussian mixture under new names): a package on PYTHONPATH by dotted name,
  a file by path, from another working directory; their names work as config variants and
  fields, and their rows equal the originals' (same code, same seed)."""
  import shutil  # pylint: disable=g-import-not-at-top
  pkg = tmp_path / 'mine'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  shutil.copy(os.path.join(ROOT, 'search', 'bon.py'), pkg / 'my_bon.py')
  shutil.copy(os.path.join(ROOT, 'rewards', 'linear.py'), tmp_path / 'my_linear.py')
  shutil.copy(os.path.join(ROOT, 'models', 'gmm.py'), tmp_path / 'my_gmm.py')
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  common = ['--config=' + os.path.join(ROOT, 'configs', 'gmm2d.py') + ':quick,{m}',
            '--config.reward.name={r}', '--config.model.name={b}']

  def run(workdir, method, reward, backbone, *imports):
    args = [a.format(m=method, r=reward, b=backbone) for a in common]
    return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *imports, *args,
                           f'--workdir={tmp_path / workdir}'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)

  proc = run('mine', 'my_bon', 'my_linear', 'my_gmm', '--import=mine.my_bon',
             '--import=my_linear.py', f'--import={tmp_path / "my_gmm.py"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  ours = run('ours', 'bon', 'linear', 'gmm')
  assert ours.returncode == 0, ours.stderr[-3000:]
  with open(tmp_path / 'mine' / 'metrics.json') as f, open(tmp_path / 'ours' / 'metrics.json') as g:
    mine, theirs = json.load(f), json.load(g)
  for key in ('reward_mean', 'energy_distance', 'nfe'):
    assert mine[key] == theirs[key], key
  bad = run('bad', 'bon', 'linear', 'gmm', '--import=not_a_module_anywhere')
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      bad.stderr.strip().splitlines()[-1]]
  assert 'cannot import it' in bad.stderr

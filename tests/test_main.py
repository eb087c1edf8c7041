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


@pytest.mark.parametrize('override,message', [
    ('--config.sampler.interpolant=edm', 'valid: linear, vp, cosine, discrete'),
    ('--config.experiment=finetune', 'valid: train, train_classifier, sample, search, compare'),
    ('--config.search.budget=5', 'too small for svdd: it needs at least 40 NFEs'),
    ('--config.model.weights=(0.2,0.2,0.2)', 'sum to 1'),
])
def test_bad_input_is_a_clear_error(tmp_path, override, message):
  proc = _main('--config=configs/gmm2d.py:quick,svdd', f'--workdir={tmp_path}', override)
  assert proc.returncode == 2
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_search_run_writes_the_contract(tmp_path):
  proc = _main('--config=configs/gmm2d.py:quick,rbf', f'--workdir={tmp_path}',
               '--config.search.rbf_parallel=2', '--config.reward.temperature=0.5')
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.load(open(tmp_path / 'metrics.json'))
  for key in ('nfe', 'reward_mean', 'reward_max', 'wall_s', 'compile_s', 'num_invalid'):
    assert key in metrics
  assert 0 < metrics['nfe'] <= 640
  samples = np.load(tmp_path / 'samples.npz')
  assert samples['x0'].shape == (4, 2) and samples['reward'].shape == (4,)
  assert samples['trace_nfe'].shape == samples['trace_best'].shape

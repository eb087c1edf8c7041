"""The text-to-image benchmark harness (configs/harness.py) on the tiny random SD and FLUX
models: per-prompt records pooled into the summary table, paired differences against best-of-N,
grids per prompt, and resuming per chunk of prompts."""

import csv
import json
import os

import numpy as np
import pytest

from configs import harness
from experiments import problem as problem_lib
from experiments import sweep

pytestmark = pytest.mark.usefixtures('fast_compilation')
FLUX = os.path.join(os.path.dirname(__file__), '..', 'models', 'data', 'flux', 'schnell')


def _quick(backbone, sd_tiny, suite):
  """The quick harness, cut to bon and rbf at one seed: 2 methods x 2 chunks of 2 prompts."""
  config = harness.get_config(f'{backbone},quick,{suite}')
  config.model.path = (FLUX if backbone == 'flux' else
                       os.path.join(sd_tiny, 'stable_diffusion'))
  config.reward.update(model=os.path.join(sd_tiny, 'clip'),
                       head=os.path.join(sd_tiny, 'aesthetic.safetensors'))
  config.sweep.update(method=('bon', 'rbf'), seed=(0,))
  config.sweep.paired = (('method', 'rbf', 'bon', 'reward_mean'),)
  return config


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_the_quick_harness_on_tiny_sd_writes_the_table_and_resumes_per_chunk(sd_tiny,
                                                                                  tmp_path):
  config = _quick('sd', sd_tiny, 'geneval')
  workdir = str(tmp_path / 'harness')
  assert config.search.budget == 4 * config.sampler.num_steps   # PSP's N-bar = 4
  sweep.run(config, workdir)

  rows = _rows(os.path.join(workdir, 'points.csv'))
  assert sorted((r['method'], r['prompt']) for r in rows) == sorted(
      (m, str(p)) for m in ('bon', 'rbf') for p in range(4))
  for r in rows:
    assert 0 < int(float(r['nfe'])) <= config.search.budget
    assert float(r['wall_s_per_prompt']) > 0
    assert r['heldout_aesthetic_mean'] not in ('', None)
  # A prompt's row is its own search's: the best output's reward in the chunk's samples.npz.
  point = os.path.join(workdir, 'points', 'method=bon,seed=0,prompts=2-4')
  data = np.load(os.path.join(point, 'samples.npz'))
  assert list(data['prompt_index']) == [2, 3]
  assert os.path.isfile(os.path.join(point, 'samples_002.png'))
  bon_3 = [r for r in rows if r['method'] == 'bon' and r['prompt'] == '3'][0]
  np.testing.assert_allclose(float(bon_3['reward_mean']), data['reward'][1], rtol=1e-6)

  summary = open(os.path.join(workdir, 'summary.md')).read()
  assert '| method | reward_mean | heldout_aesthetic_mean | nfe | wall_s_per_prompt |' in summary
  assert 'over 4 prompts × 1 seeds' in summary
  assert '## Time and memory' in summary and '## Paired differences' in summary
  paired = _rows(os.path.join(workdir, 'paired.csv'))
  assert [(p['a'], p['b'], p['num_seeds']) for p in paired] == [('rbf', 'bon', '4')]
  assert sorted(os.listdir(os.path.join(workdir, 'grids'))) == [
      f'prompt_{k:03d}.png' for k in range(4)]

  # Resuming: a lost chunk is the only one searched again, with the same result.
  records = os.path.join(workdir, 'points')
  lost = 'method=rbf,seed=0,prompts=0-2'
  kept = os.path.getmtime(os.path.join(records, 'method=bon,seed=0,prompts=0-2.json'))
  before = json.load(open(os.path.join(records, lost + '.json')))['per_prompt']
  os.remove(os.path.join(records, lost + '.json'))
  sweep.run(config, workdir)
  assert os.path.getmtime(os.path.join(records, 'method=bon,seed=0,prompts=0-2.json')) == kept
  after = json.load(open(os.path.join(records, lost + '.json')))['per_prompt']
  np.testing.assert_allclose(after['reward_mean'], before['reward_mean'], rtol=1e-6)


def test_the_quick_harness_on_tiny_flux_with_parti_prompts(sd_tiny, tmp_path):
  config = _quick('flux', sd_tiny, 'parti')
  config.sweep.method = ('bon', 'smc')
  config.sweep.paired = (('method', 'smc', 'bon', 'heldout_aesthetic_mean'),)
  workdir = str(tmp_path / 'harness')
  sweep.run(config, workdir)
  summary = open(os.path.join(workdir, 'summary.md')).read()
  assert '| smc |' in summary and '| bon |' in summary
  with open(os.path.join(workdir, 'points', 'method=bon,seed=0,prompts=0-2',
                         'prompts.txt')) as f:
    assert f.read().splitlines() == list(config.prompt[:2])
  assert _rows(os.path.join(workdir, 'paired.csv'))[0]['num_seeds'] == '4'


def test_prompt_rows_and_chunks_are_checked():
  assert problem_lib.prompt_rows('', 5) == (0, 5)
  assert problem_lib.prompt_rows('1-3', 5) == (1, 3)
  for bad in ('3-1', '0-6', '2', 'a-b'):
    with pytest.raises(ValueError, match='is not \'A-B\' with 0 <= A < B <= 5'):
      problem_lib.prompt_rows(bad, 5)
  config = harness.get_config('sd,quick')
  config.prompt_rows = '1-4'
  assert sweep.prompt_chunks(config, 2) == ('1-3', '3-4')
  with pytest.raises(ValueError, match='one backbone among sd, flux, sd3'):
    harness.get_config('quick')

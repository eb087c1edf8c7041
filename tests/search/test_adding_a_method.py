"""A search method is one new file: a copy of search/bon.py under a new name, in a copy of the
project, with nothing else changed, runs from main.py, in compare, in a sweep and on an
8-device mesh with its particle count checked against the devices."""

import json
import os

import pytest

from tests import project_copy

NAME = 'bon_copy'


@pytest.fixture(scope='module')
def project(tmp_path_factory):
  return project_copy.copy_with(tmp_path_factory, os.path.join('search', 'bon.py'), NAME)


_main = project_copy.main


@pytest.mark.slow  # 25 s of subprocess compilation; the registry itself is tested by default
def test_a_copied_method_runs_everywhere(project, tmp_path):
  # main.py, as a config variant token (the variants list the discovered methods).
  proc = _main(project, tmp_path / 'search', f'--config=configs/gmm2d.py:quick,{NAME}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(tmp_path / 'search' / 'samples.npz')
  # compare: the copy gives bon's row exactly (same code, same seed).
  proc = _main(project, tmp_path / 'compare', '--config=configs/gmm2d.py:quick',
               f'--config.compare.methods=("bon","{NAME}")')
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = project_copy.table(tmp_path / 'compare' / 'table.md')
  assert rows[NAME][1:] == rows['bon'][1:]
  # A sweep over it.
  proc = _main(project, tmp_path / 'sweep', '--config=configs/figures/dts_2d.py:quick',
               f'--config.sweep.method=("{NAME}",)', '--config.sweep.task=("gmm",)',
               '--config.sweep.budget=(160,)')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(tmp_path / 'sweep' / 'points' / f'task=gmm,method={NAME},budget=160,'
                        'seed=0.json')
  # The mesh check applies to it: 100 NFE // 10 steps = 10 samples over 8 devices.
  proc = _main(project, tmp_path / 'bad', f'--config=configs/gmm2d.py:quick,{NAME}',
               '--config.search.budget=100')
  assert proc.returncode == 2
  assert f'{NAME} runs 10 samples (search.budget // sampler.num_steps), which do not divide ' \
         'over the 8 devices' in proc.stderr


def test_a_new_method_with_a_knob_leaves_recorded_sweeps_as_they_were(tmp_path_factory,
                                                                       tmp_path):
  """A method file that brings a knob of its own adds a field to every config's `search`
  section; runs of the other methods do not read it (experiments/identity.py), so a sweep
  recorded before the file existed resumes in the project with it, recomputing nothing."""
  import experiments  # pylint: disable=g-import-not-at-top
  from configs.figures import dts_2d  # pylint: disable=g-import-not-at-top
  config = dts_2d.get_config('quick')
  config.sweep.update(method=('bon',), task=('gmm',), budget=(160,))
  workdir = tmp_path / 'sweep'
  experiments.get_experiment('sweep')(config, str(workdir))
  record = workdir / 'points' / 'task=gmm,method=bon,budget=160,seed=0.json'
  before = (record.read_bytes(), record.stat().st_mtime_ns)

  project = project_copy.copy_with(tmp_path_factory, os.path.join('search', 'bon.py'),
                                   'bon_knob')
  source = os.path.join(project, 'search', 'bon_knob.py')
  text = open(source).read()
  assert 'METHOD = base.Method(' in text
  with open(source, 'w') as f:
    f.write(text.replace('METHOD = base.Method(', 'METHOD = base.Method(knobs={"bon_knob": 3}, ',
                         1))
  proc = _main(project, workdir, '--config=configs/figures/dts_2d.py:quick',
               '--config.sweep.method=("bon",)', '--config.sweep.task=("gmm",)',
               '--config.sweep.budget=(160,)')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (record.read_bytes(), record.stat().st_mtime_ns) == before
  # The same run: its config.json is left as recorded (without the new knob).
  assert 'bon_knob' not in json.load(open(workdir / 'config.json'))['search']

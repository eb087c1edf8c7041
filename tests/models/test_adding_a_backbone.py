"""A backbone is one new file: a copy of models/gmm.py under a new name, in a copy of the
project, with nothing else changed, is a valid model.name that main.py runs (a comparison on an
8-device mesh), with the Gaussian mixture's results exactly, its exact tilted target included,
which the declaration carries (docs/extending.md, the table of files touched)."""

import os

from tests import project_copy

NAME = 'gmm_copy'


def test_a_copied_backbone_runs_from_main(tmp_path_factory, tmp_path):
  project = project_copy.copy_with(tmp_path_factory, os.path.join('models', 'gmm.py'), NAME)
  tables = {}
  for name in ('gmm', NAME):
    workdir = tmp_path / name
    proc = project_copy.main(project, workdir, '--config=configs/gmm2d.py:quick',
                             '--config.compare.methods=("bon","smc")',
                             f'--config.model.name={name}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables[name] = project_copy.table(workdir / 'table.md')
  assert tables[NAME] == tables['gmm']
  assert 'energy_distance' in tables[NAME]['method']   # judged against the exact tilted target

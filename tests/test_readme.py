"""Every `python` block of the README and of docs/extending.md runs as written, in order, in one
namespace (the worked examples of adding a backbone, a reward and a search method), so the
documentation cannot rot; the README's first block (the Python API) also runs as a script from
outside the checkout, as a user runs it."""

import importlib
import os
import re
import subprocess
import sys

import pytest

from samplers.ground import registry
from tests.conftest import ROOT

PAGES = ('README.md', os.path.join('docs', 'extending.md'))


def _blocks(page):
  with open(os.path.join(ROOT, page)) as f:
    return re.findall(r'```python\n(.*?)```', f.read(), re.S)


@pytest.fixture
def registries():
  """The registries as they were: what a block registers does not reach the other tests."""
  regs = [importlib.import_module(p).REGISTRY for p in registry.PACKAGES]
  saved = [dict(r.entries) for r in regs]
  yield
  for reg, entries in zip(regs, saved):
    reg._entries = entries  # pylint: disable=protected-access


def test_documented_python_blocks_run(tmp_path, monkeypatch, registries):
  del registries
  monkeypatch.chdir(tmp_path)   # the blocks write their runs under runs/, here
  blocks = [(page, b) for page in PAGES for b in _blocks(page)]
  assert len(blocks) >= 3
  namespace = {}
  for i, (page, block) in enumerate(blocks):
    exec(compile(block, f'{page} python block {i}', 'exec'), namespace)  # pylint: disable=exec-used


def test_the_readme_api_example_runs_as_a_script_outside_the_checkout(tmp_path):
  """The project on PYTHONPATH, the script and its working directory elsewhere: the user's own
  reward is registered, searched and recorded."""
  script = tmp_path / 'my_script.py'
  script.write_text(_blocks('README.md')[0])
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r'^reward -?\d+\.\d{3} at 12800 NFEs$', proc.stdout, re.M), proc.stdout
  with open(tmp_path / 'runs' / 'api_smc' / 'config.json') as f:
    assert '"name": "near"' in f.read()


def test_documented_commands_recompute_into_fresh_workdirs():
  """No documented command points --workdir at results/ (which holds the recorded points, so a
  rerun there would only re-aggregate them and rewrite tracked files)."""
  import glob  # pylint: disable=g-import-not-at-top
  pages = ['README.md'] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
  pages += sorted(glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True))
  offending = []
  for page in pages:
    with open(os.path.join(ROOT, page)) as f:
      for i, line in enumerate(f, 1):
        if re.search(r'--workdir[= ]results/', line):
          offending.append(f'{os.path.relpath(page, ROOT)}:{i}: {line.strip()}')
  assert not offending, '\n'.join(offending)

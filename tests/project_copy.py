"""A copy of the project with one extra file, run through main.py on an 8-device mesh: what the
"one new file" tests (tests/search/test_adding_a_method.py,
tests/rewards/test_adding_a_reward.py) use."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_with(tmp_path_factory, source: str, name: str) -> str:
  """A copy of the project (no .git, results or runs) in which the module `source` (a path
  relative to the root) is also copied beside itself as NAME.py; returns the copy's root."""
  copy = str(tmp_path_factory.mktemp('project') / 'repo')
  shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns('.git', 'results', '__pycache__',
                                                            'runs'))
  folder = os.path.join(copy, os.path.dirname(source))
  shutil.copy(os.path.join(copy, source), os.path.join(folder, f'{name}.py'))
  return copy


def main(project: str, workdir, *args):
  """main.py in the copy, every run on an 8-device mesh."""
  # Both sides of every comparison run here, so XLA's optimisations (compile time) are off.
  env = dict(os.environ, JAX_NUM_CPU_DEVICES='8', JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  return subprocess.run([sys.executable, 'main.py', f'--workdir={workdir}', *args], cwd=project,
                        env=env, capture_output=True, text=True, timeout=600)


def table(path, drop=('wall_s', 'compile_s')) -> dict:
  """A file's first markdown table as {first cell: [cells]}, without the timing columns."""
  rows = {}
  for line in open(path):
    if not line.strip():
      break
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    rows[cells[0]] = cells
  dropped = [i for i, c in enumerate(rows['method']) if c in drop]
  return {k: [c for i, c in enumerate(r) if i not in dropped] for k, r in rows.items()}

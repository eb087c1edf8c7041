"""Outputs of the sequential DTS of commit f8af28a (the last one before the indexed tree and
batched rollouts), kept in tests/search/data/dts_sequential.npz for test_dts.py to check
that dts_batch = 1 is still that algorithm.

  python -m tests.search.dts_reference   # rewrites the file (needs git and that commit)
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

COMMIT = 'f8af28a'
HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, 'data', 'dts_sequential.npz')
# The uniform build: its decisions depend on visit counts and keys only, never on float values,
# so the same tree grows on any CPU (softmax and uct decide by values, which rounding can flip).
CASES = {
    'uniform_samples': dict(tree_selection='uniform', output='samples'),
    'uniform_best': dict(tree_selection='uniform', output='best'),
}
BUDGET, NUM_STEPS, BRANCH_EVERY, NUM_PARTICLES = 3000, 20, 4, 64


def run_case(module, name):
  """(x0, reward, nfe, num_scored) of one case, run by `module` (a dts implementation)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  from rewards import analytic  # pylint: disable=g-import-not-at-top
  from tests.search import common  # pylint: disable=g-import-not-at-top
  sampler = common.make_sampler('vp', num_steps=NUM_STEPS)
  reward = analytic.linear((1.0, 0.5))
  cfg = common.search_cfg('dts', budget=BUDGET, num_particles=NUM_PARTICLES,
                          branch_every=BRANCH_EVERY, resampling='multinomial', **CASES[name])
  config = module.Config.from_config(cfg, 1.0, NUM_STEPS, search.get_method('dts'))
  result = jax.jit(lambda k, s: module.run(k, s, reward, config))(jax.random.key(3), sampler)
  return {f'{name}/x0': np.asarray(result.x0), f'{name}/reward': np.asarray(result.reward),
          f'{name}/nfe': np.asarray(result.nfe), f'{name}/num_scored': np.asarray(result.num_scored)}


def main():
  import numpy as np  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(HERE))
  source = subprocess.run(['git', 'show', f'{COMMIT}:search/dts.py'], cwd=root, check=True,
                          capture_output=True, text=True).stdout
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'dts_sequential.py')
    with open(path, 'w') as f:
      f.write(source)
    spec = importlib.util.spec_from_file_location('dts_sequential', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    outputs = {}
    for name in CASES:
      outputs.update(run_case(module, name))
  os.makedirs(os.path.dirname(PATH), exist_ok=True)
  np.savez(PATH, **outputs)
  print(f'wrote {PATH}', file=sys.stderr)


if __name__ == '__main__':
  main()

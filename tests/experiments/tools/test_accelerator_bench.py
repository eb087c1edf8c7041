"""The accelerator measurement (experiments/tools/accelerator_bench.py) at tiny size on the CPU:
the same programs as on an accelerator host, every row filled."""

import json
import os

import pytest

from experiments.tools import accelerator_bench

pytestmark = pytest.mark.usefixtures('fast_compilation')


# FLUX in the default run; both models, as the command runs them, among the slow tests.
@pytest.mark.parametrize('models', [('flux',), pytest.param(('sd', 'flux'), marks=pytest.mark.slow)],
                         ids=['flux', 'both'])
def test_the_accelerator_command_runs_tiny_on_the_cpu(tmp_path, models):
  report = accelerator_bench.main(str(tmp_path), tiny=True, models=models, repeats=1)
  assert tuple(m['model'] for m in report['models']) == models
  for model in report['models']:
    assert [r['method'] for r in model['methods']] == list(accelerator_bench.METHODS)
    batches = {r['batch'] for r in model['raw']}
    for row in model['methods']:
      assert 0 < row['nfe'] <= model['budget'], row
      assert row['rows'] in batches
      assert row['s_per_nfe'] > 0 and row['overhead'] > 0 and row['compile_s'] > 0
      assert row['program_memory_gib'] > 0
    for raw in model['raw']:
      assert raw['forward_s_per_nfe'] > 0 and raw['with_reward_s_per_nfe'] > 0
  assert json.load(open(tmp_path / 'accelerator.json'))['device'] == report['device']
  text = open(tmp_path / 'accelerator.md').read()
  assert '## flux (tiny): 2 steps, 16 NFE per search' in text
  assert '| rbf | 2 |' in text


def test_an_unknown_model_is_named():
  with pytest.raises(ValueError, match="unknown model 'sdxl'; valid: sd, flux"):
    accelerator_bench.main('/nonexistent', tiny=True, models=('sdxl',))

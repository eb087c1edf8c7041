"""experiments/search.py: a held-out reward that fails after the search keeps the search's
files, stops with one error naming it, and a rerun scores only the held-out rewards."""

import json
import os

import numpy as np
import pytest

import experiments
from configs import sd as sd_config
from experiments import search as search_exp
from rewards import serve
from tests.rewards import service_fixture

pytestmark = pytest.mark.usefixtures('fast_compilation')
PROMPTS = ('a red cat', 'a blue dog house')


def test_a_failing_heldout_reward_keeps_the_search_and_a_rerun_scores_only_it(sd_tiny,
                                                                              tmp_path):
  """bon on tiny Stable Diffusion, searched with the tiny CLIP score and judged by a service
  whose scorer answers the probe and then fails."""
  socket_path = str(tmp_path / 'judge.sock')
  failing = serve.Server(service_fixture.fails_after(1), socket_path).start()
  config = sd_config.get_config('tiny,bon')
  config.model.path = os.path.join(sd_tiny, 'stable_diffusion')
  config.reward.update(model=os.path.join(sd_tiny, 'clip'), heldout=('service',),
                       address=socket_path, timeout=30.0)
  (tmp_path / 'prompts.txt').write_text('\n'.join(PROMPTS) + '\n')
  config.prompt_file = str(tmp_path / 'prompts.txt')
  workdir = str(tmp_path / 'run')
  run = experiments.get_experiment('search')
  try:
    with pytest.raises(search_exp.HeldoutError,
                       match=r'held-out reward service failed after the search finished .*'
                             r'scorer failure on call 2.*rerun the same command'):
      run(config, workdir)
  finally:
    failing.close()
  first = np.load(os.path.join(workdir, 'samples.npz'))
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['nfe'] > 0 and 'heldout_service_mean' not in metrics
  assert os.path.exists(os.path.join(workdir, search_exp.PENDING))

  calls = []
  score = service_fixture.brightness()
  working = serve.Server(lambda x, p: calls.append(len(x)) or score(x, p), socket_path).start()
  try:
    again = run(config, workdir)
  finally:
    working.close()
  assert len(calls) == 2 and calls[1] == len(first['images'])   # the probe, then the judge
  assert again['wall_s'] == metrics['wall_s']     # the first run's search, kept
  data = np.load(os.path.join(workdir, 'samples.npz'))
  np.testing.assert_array_equal(data['images'], first['images'])
  expected = (data['images'].mean(axis=(1, 2, 3)) / 255.0
              + np.array([len(PROMPTS[i]) for i in data['prompt_index']]))
  np.testing.assert_allclose(data['heldout_service'], expected, rtol=1e-5)
  assert again['heldout_service_mean'] == pytest.approx(float(np.mean(expected)), rel=1e-5)
  assert not os.path.exists(os.path.join(workdir, search_exp.PENDING))


def test_wall_and_compile_times_land_in_their_own_fields(tmp_path, monkeypatch):
  """compile_and_run returns (output, compile_s, wall_s); metrics.json keeps them apart."""
  from configs import gmm2d  # pylint: disable=g-import-not-at-top
  from experiments import runtime  # pylint: disable=g-import-not-at-top
  real = runtime.compile_and_run
  monkeypatch.setattr(runtime, 'compile_and_run',
                      lambda *a, **k: (real(*a, **k)[0], 11.0, 22.0))
  metrics = experiments.get_experiment('search')(gmm2d.get_config('quick,bon'), str(tmp_path))
  assert (metrics['compile_s'], metrics['wall_s']) == (11.0, 22.0)


@pytest.mark.parametrize('method', ['smc', 'svdd', 'rbf', 'dts', 'beam'])
def test_a_method_that_needs_noise_on_an_ode_is_warned_naming_the_fix(method, caplog):
  """Particles resampled, children drawn or branches grown on a deterministic sampler are
  copies of one path: the run is warned, naming --config.sampler.sde=true; methods that do
  not depend on the noise (bon, sop, zero_order) are not."""
  from configs import toy2d  # pylint: disable=g-import-not-at-top
  sampler = type('S', (), dict(sde=False, interpolant=type('I', (), dict(name='linear'))))
  with caplog.at_level('WARNING'):
    search_exp.check_sampler(method, sampler)
    search_exp.check_sampler('bon', sampler)
    search_exp.check_sampler('sop', sampler)
  warned = [r.getMessage() for r in caplog.records if 'deterministic' in r.getMessage()]
  assert len(warned) == 1 and warned[0].startswith(method)
  assert '--config.sampler.sde=true' in warned[0]
  # The toy configs' search variants take the SDE for such methods (the README's ring + SMC
  # example ran SMC on the linear ODE: 5 distinct outputs of 16), the ODE otherwise.
  assert toy2d.get_config(f'ring,{method}').sampler.sde
  assert not toy2d.get_config('ring,bon').sampler.sde

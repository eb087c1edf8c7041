"""Text-to-image search end to end on the tiny random FLUX.1 folders of tests/models/data/flux
(diffusers' real layout and key names), with the tiny CLIP reward: every method writes its
decoded images. RBF, the method of the paper that searches FLUX, runs by default; the others
with -m slow (all of them run by default on Stable Diffusion and the 2D problems)."""

import os

import numpy as np
import pytest

import search
from configs import flux as flux_config
from experiments import sample as sample_exp
from experiments import search as search_exp

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'models', 'data', 'flux')
PROMPTS = ('a red cat', 'a blue dog house')
DEFAULT_METHODS = ('rbf',)

pytestmark = pytest.mark.usefixtures('fast_compilation')


def tiny_config(config, path, sd_tiny, tmp_path):
  """A tiny text-to-image config on the model folder `path`, the tiny CLIP and aesthetic
  rewards of `sd_tiny`, and PROMPTS in a prompt file (shared with the SD3 search tests)."""
  config.model.path = path
  config.reward.model = os.path.join(sd_tiny, 'clip')
  config.reward.head = os.path.join(sd_tiny, 'aesthetic.safetensors')
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('\n'.join(PROMPTS) + '\n')
  config.prompt_file = str(prompts)
  return config


def _config(sd_tiny, tmp_path, variant):
  return tiny_config(flux_config.get_config(f'tiny,{variant}'),
                     os.path.join(DATA, 'dev' if 'dev' in variant else 'schnell'), sd_tiny,
                     tmp_path)


def check_outputs(workdir, n_expected=None):
  data = np.load(os.path.join(workdir, 'samples.npz'))
  n = len(data['reward'])
  assert n_expected is None or n == n_expected
  assert data['x0'].shape == (n, 8, 8, 16)
  assert data['images'].shape == (n, 16, 16, 3) and data['images'].dtype == np.uint8
  assert np.all(np.isfinite(data['reward']))
  np.testing.assert_array_equal(data['prompt_index'], np.repeat([0, 1], n // 2))
  for i in range(2):
    assert os.path.isfile(os.path.join(workdir, f'samples_{i:03d}.png'))


@pytest.mark.parametrize('method', [
    m if m in DEFAULT_METHODS else pytest.param(m, marks=pytest.mark.slow)
    for m in search.METHODS])
def test_every_method_searches_flux(sd_tiny, tmp_path, method):
  search_and_check(_config(sd_tiny, tmp_path, method), str(tmp_path / method))


def search_and_check(config, workdir):
  """Runs the search on the two prompts and checks what it wrote (shared with SD3's tests)."""
  metrics = search_exp.run(config, workdir)
  assert metrics['num_prompts'] == 2 and metrics['num_invalid'] == 0
  assert 0 < metrics['nfe'] <= config.search.budget
  check_outputs(workdir)


@pytest.mark.slow
def test_dev_samples_with_its_guidance_and_shift(sd_tiny, tmp_path):
  config = _config(sd_tiny, tmp_path, 'dev,sample')
  metrics = sample_exp.run(config, str(tmp_path / 'dev'))
  assert metrics['nfe'] == 4 * 4
  check_outputs(str(tmp_path / 'dev'), 8)

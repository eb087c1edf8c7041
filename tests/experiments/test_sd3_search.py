"""Text-to-image search end to end on the tiny random SD3.5 folders of tests/models/data/sd3
(diffusers' real layout and key names, written by its own save_pretrained), with the tiny CLIP
reward: every method writes its decoded images. RBF (the VP-SDE by conversion, on the
pipeline's grid with guidance) runs by default; the others with -m slow, as on FLUX."""

import os

import pytest

import search
from configs import sd3 as sd3_config
from experiments import sample as sample_exp
from tests.experiments import test_flux_search

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'models', 'data', 'sd3')
DEFAULT_METHODS = ('rbf',)

pytestmark = pytest.mark.usefixtures('fast_compilation')


def _config(sd_tiny, tmp_path, variant):
  return test_flux_search.tiny_config(
      sd3_config.get_config(f'tiny,{variant}'),
      os.path.join(DATA, 'medium' if 'medium' in variant else 'large'), sd_tiny, tmp_path)


@pytest.mark.parametrize('method', [
    m if m in DEFAULT_METHODS else pytest.param(m, marks=pytest.mark.slow)
    for m in search.METHODS])
def test_every_method_searches_sd3(sd_tiny, tmp_path, method):
  test_flux_search.search_and_check(_config(sd_tiny, tmp_path, method),
                                    str(tmp_path / method))


@pytest.mark.slow
def test_medium_samples_as_its_pipeline(sd_tiny, tmp_path):
  config = _config(sd_tiny, tmp_path, 'medium,sample')
  assert config.sampler.time_grid == 'flow_match' and not config.sampler.sde
  metrics = sample_exp.run(config, str(tmp_path / 'medium'))
  assert metrics['nfe'] == 4 * 4   # guidance's two passes are one NFE
  test_flux_search.check_outputs(str(tmp_path / 'medium'), 8)

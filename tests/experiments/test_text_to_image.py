"""Text-to-image search end to end on tiny random Stable Diffusion and CLIP folders, loaded by
the same code path as real weights: every method, two prompts, decoded images and rewards."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import rewards
import search
from configs import sd as sd_config
from experiments import sample as sample_exp
from experiments import search as search_exp
from models import stable_diffusion

PROMPTS = ('a red cat', 'a blue dog house')


# These tests check plumbing, not speed: XLA's optimisation passes only cost compile time.
pytestmark = pytest.mark.usefixtures('fast_compilation')


def _config(sd_tiny, tmp_path, variant, **reward):
  config = sd_config.get_config(f'tiny,{variant}')
  config.model.path = os.path.join(sd_tiny, 'stable_diffusion')
  config.reward.model = os.path.join(sd_tiny, 'clip')
  config.reward.head = os.path.join(sd_tiny, 'aesthetic.safetensors')
  config.reward.update(reward)
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('\n'.join(PROMPTS) + '\n')
  config.prompt_file = str(prompts)
  return config


# Two methods in the default run (independent chains, resampling); rbf and dts_star run on the
# same tiny model by default in tests/experiments/test_colab.py (the text-to-image notebook),
# every method on the 2D problems, and all eight here with -m slow.
DEFAULT_METHODS = ('bon', 'smc')


@pytest.mark.parametrize('method', [
    m if m in DEFAULT_METHODS else pytest.param(m, marks=pytest.mark.slow)
    for m in search.METHODS])
def test_every_method_searches_per_prompt(sd_tiny, tmp_path, method):
  config = _config(sd_tiny, tmp_path, method)
  workdir = str(tmp_path / method)
  metrics = search_exp.run(config, workdir)
  assert metrics['num_prompts'] == 2
  assert 0 < metrics['nfe'] <= config.search.budget
  assert metrics['num_invalid'] == 0
  data = np.load(os.path.join(workdir, 'samples.npz'))
  n = len(data['reward'])
  assert data['x0'].shape == (n, 8, 8, 4) and n % 2 == 0
  assert data['images'].shape == (n, 16, 16, 3) and data['images'].dtype == np.uint8
  np.testing.assert_array_equal(data['prompt_index'], np.repeat([0, 1], n // 2))
  assert np.all(np.isfinite(data['reward']))
  for i in range(2):
    assert os.path.isfile(os.path.join(workdir, f'samples_{i:03d}.png'))
  with open(os.path.join(workdir, 'prompts.txt')) as f:
    assert f.read().split('\n')[:2] == list(PROMPTS)
  # diversity is within each prompt's outputs, averaged over the prompts (never across them).
  from experiments.evaluation import metrics as metrics_lib
  within = [metrics_lib.mean_pairwise_distance(data['x0'][data['prompt_index'] == i])
            for i in range(2)]
  if n // 2 > 1:
    np.testing.assert_allclose(metrics['diversity'], np.mean(within), rtol=1e-6)
  else:
    assert 'diversity' not in metrics
  if method != 'bon':
    return
  # The saved rewards are the CLIP scores of the saved latents against their own prompt.
  backbone = stable_diffusion.make_backbone(config.model)
  reward = rewards.get_reward(config.reward, backbone.data_shape, backbone.decoder)
  text = reward.encode_text(list(PROMPTS))
  score = jax.jit(lambda rw, x, t: rw(x, {'reward_text': t}))
  for i in range(2):
    rows = data['prompt_index'] == i
    again = score(reward, data['x0'][rows], text[i])
    np.testing.assert_allclose(np.asarray(again), data['reward'][rows], rtol=1e-4, atol=1e-5)


def test_sdxl_searches_with_its_pooled_text_and_size_ids(sd_tiny, tmp_path):
  """SDXL as a backbone: the tiny folder diffusers' StableDiffusionXLPipeline saved
  (tests/models/data/sd/sdxl), two prompts, each conditioning on both encoders' states and the
  pooled text; guidance against the zeroed unconditional input."""
  config = _config(sd_tiny, tmp_path, 'rbf')
  config.model.path = os.path.join(os.path.dirname(__file__), '..', 'models', 'data', 'sd',
                                   'sdxl')
  config.model.guidance_scale = 3.0
  workdir = str(tmp_path / 'sdxl')
  metrics = search_exp.run(config, workdir)
  assert metrics['num_prompts'] == 2 and metrics['num_invalid'] == 0
  assert 0 < metrics['nfe'] <= config.search.budget
  data = np.load(os.path.join(workdir, 'samples.npz'))
  assert data['x0'].shape[1:] == (8, 8, 4) and data['images'].shape[1:] == (16, 16, 3)
  assert np.all(np.isfinite(data['reward']))
  cond = stable_diffusion.encode_prompts(config.model, list(PROMPTS))
  assert cond['text'].shape == (2, 77, 56) and cond['pooled'].shape == (2, 16)


@pytest.mark.parametrize('reward_name', ['aesthetic', 'host_image'])
def test_other_rewards_drive_the_search(sd_tiny, tmp_path, monkeypatch, reward_name):
  monkeypatch.syspath_prepend(os.path.dirname(__file__))
  config = _config(sd_tiny, tmp_path, 'bon', name=reward_name,
                   function='host_reward_fixture:prompt_length_plus_brightness')
  metrics = search_exp.run(config, str(tmp_path / 'run'))
  data = np.load(str(tmp_path / 'run' / 'samples.npz'))
  if reward_name == 'host_image':  # the host function saw each image with its own prompt
    expected = (data['images'].mean(axis=(1, 2, 3)) / 255.0 +
                np.array([len(PROMPTS[i]) for i in data['prompt_index']]))
    np.testing.assert_allclose(data['reward'], expected, rtol=1e-5)
  assert np.isfinite(metrics['reward_mean'])


def test_plain_sampling(sd_tiny, tmp_path):
  metrics = sample_exp.run(_config(sd_tiny, tmp_path, 'sample'), str(tmp_path / 'sample'))
  assert metrics['num_prompts'] == 2 and metrics['nfe'] == 4 * 4
  data = np.load(str(tmp_path / 'sample' / 'samples.npz'))
  assert data['images'].shape == (8, 16, 16, 3)


@pytest.mark.slow
def test_guidance_through_the_decoder_and_clip(sd_tiny, tmp_path):
  """45 s of compilation on 2 cores (gradients through U-Net, VAE and CLIP); guidance itself
  is covered by the default run on the 2D problems."""
  config = _config(sd_tiny, tmp_path, 'bon')
  config.search.guidance = True  # DPS through the VAE decoder and CLIP
  metrics = search_exp.run(config, str(tmp_path / 'guided'))
  assert np.isfinite(metrics['reward_mean'])


def test_main_reports_a_missing_prompt_file(sd_tiny, tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/sd.py:tiny,bon',
       f'--workdir={tmp_path / "run"}', f'--config.model.path={sd_tiny}/stable_diffusion',
       f'--config.reward.model={sd_tiny}/clip', f'--config.prompt_file={tmp_path}/none.txt'],
      cwd=root, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert 'none.txt' in proc.stderr and 'does not exist' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


def test_a_host_reward_of_the_wrong_shape_fails_before_compiling(sd_tiny, tmp_path,
                                                                  monkeypatch):
  """The callback's declared shape hides the function's real one from tracing: the function
  is called on a tiny batch on the host first."""
  from experiments import runtime  # pylint: disable=g-import-not-at-top
  monkeypatch.syspath_prepend(os.path.dirname(__file__))
  monkeypatch.setattr(runtime, 'compile_and_run', lambda *a, **k: pytest.fail('compiled'))
  config = _config(sd_tiny, tmp_path, 'bon', name='host_image',
                   function='host_reward_fixture:one_score_too_many')
  with pytest.raises(ValueError, match=r'the host reward returned shape \(3,\) for 2 inputs'):
    search_exp.run(config, str(tmp_path / 'run'))

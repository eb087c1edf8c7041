"""The trained 2D MLP backbones: sampling along the other interpolant, resuming, loading."""

import json
import os

import jax
import numpy as np
import pytest

from configs import toy2d
from experiments import sample
from experiments import train
from models.loading import checkpoint
from models.loading import trained as trained_lib


def _train_config(prediction, num_steps=3000):
  config = toy2d.get_config('gmm,quick' + (',epsilon' if prediction == 'epsilon' else ''))
  config.model.update(hidden=64, depth=3, embed_dim=32)
  config.train.update(num_steps=num_steps, batch_size=256, log_every=num_steps // 2,
                      learning_rate=3e-3)
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Workdirs of a velocity model (linear) and an eps model (VP), trained once per session."""
  out = {}
  for prediction in ('velocity', 'epsilon'):
    workdir = str(tmp_path_factory.mktemp(prediction))
    train.run(_train_config(prediction), workdir)
    out[prediction] = workdir
  return out


# The velocity model is native to the linear interpolant and is sampled along VP; the eps model
# is native to VP and is sampled along linear. Exact samplers reach an energy distance of
# ~0.002 on this mixture and these trained models ~0.004-0.006; 300 training steps give ~0.05.
@pytest.mark.parametrize('prediction,interpolant,sde', [
    ('velocity', 'vp', True), ('velocity', 'vp', False),
    ('epsilon', 'linear', False), ('epsilon', 'linear', True)])
def test_trained_model_sampled_along_other_interpolant_reproduces_data(
    trained, tmp_path, prediction, interpolant, sde):
  config = _train_config(prediction)
  config.experiment = 'sample'
  config.model.checkpoint = trained[prediction]
  config.sampler.update(interpolant=interpolant, sde=sde, num_steps=100, num_samples=4000)
  result = sample.run(config, str(tmp_path))
  assert result['energy_distance'] < 0.015, result
  assert result['nfe'] == 100 * 4000


def test_interrupted_training_resumes_to_the_same_parameters(tmp_path, monkeypatch):
  config = _train_config('velocity', num_steps=200)
  config.train.log_every = 100
  straight = str(tmp_path / 'straight')
  train.run(config, straight)

  interrupted = str(tmp_path / 'interrupted')
  original_save = checkpoint.save

  def save_then_crash(mngr, step, params, opt_state, extra=None):
    original_save(mngr, step, params, opt_state, extra)
    raise KeyboardInterrupt('simulated preemption')

  monkeypatch.setattr(checkpoint, 'save', save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    train.run(config, interrupted)
  monkeypatch.setattr(checkpoint, 'save', original_save)
  assert checkpoint.manager(os.path.join(interrupted, 'checkpoints')).latest_step() == 100
  resumed = train.run(config, interrupted)  # resumes from step 100
  with open(os.path.join(straight, 'metrics.json')) as f:
    whole = json.load(f)
  # The metrics cover both segments, not only the last one.
  assert resumed['num_segments'] == 2 and whole['num_segments'] == 1
  assert resumed['first_chunk_loss'] == whole['first_chunk_loss']
  assert resumed['final_loss'] == whole['final_loss']

  a, b = trained_lib.load(straight), trained_lib.load(interrupted)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='not a train run workdir'):
    trained_lib.load(str(tmp_path / 'nowhere'))
  config = _train_config('velocity')
  model = config.model.to_dict()
  model['data_shape'] = [2]
  (tmp_path / 'config.json').write_text(json.dumps({'model': model, 'data': {'dim': 2}}))
  with pytest.raises(FileNotFoundError, match='checkpoints.* does not exist'):
    trained_lib.load(str(tmp_path))
  os.makedirs(tmp_path / 'checkpoints')
  with pytest.raises(FileNotFoundError, match='no checkpoint found'):
    trained_lib.load(str(tmp_path))


@pytest.mark.parametrize('method', ('smc', 'dts_star'))
def test_search_on_a_trained_backbone(trained, tmp_path, method):
  from experiments import search as search_exp
  config = toy2d.get_config(f'gmm,quick,{method}')
  config.model.checkpoint = trained['epsilon']
  config.sampler.update(interpolant='linear', sde=True)
  metrics = search_exp.run(config, str(tmp_path))
  assert 0 < metrics['nfe'] <= config.search.budget
  assert np.isfinite(metrics['reward_mean'])


def test_python_and_scan_training_loops_agree(tmp_path):
  params = {}
  for loop in ('scan', 'python'):
    config = _train_config('velocity', num_steps=20)
    config.train.update(log_every=10, loop=loop)
    train.run(config, str(tmp_path / loop))
    params[loop] = trained_lib.load(str(tmp_path / loop)).params
  for a, b in zip(jax.tree.leaves(params['scan']), jax.tree.leaves(params['python'])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)

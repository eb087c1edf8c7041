"""Bad input fails with a clear message before anything is compiled."""

import pytest

import experiments
from configs import gmm2d
from configs import toy2d
from experiments import runtime


@pytest.fixture(autouse=True)
def no_compilation(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('compiled before validating the config')
  monkeypatch.setattr(runtime, 'compile_and_run', fail)


def _run(config, tmp_path):
  experiments.get_experiment(config.experiment)(config, str(tmp_path))


@pytest.mark.parametrize('field,value,message', [
    ('sampler.interpolant', 'edm', 'Unknown interpolant'),
    ('sampler.num_steps', 0, 'sampler.num_steps must be a positive integer'),
    ('sampler.num_steps', -5, 'sampler.num_steps must be a positive integer'),
    ('sampler.num_samples', 0, 'sampler.num_samples must be a positive integer'),
    ('sampler.time_grid', 'karras', 'valid: uniform, adaptive'),
    ('sampler.diffusion', 'cubic', 'Unknown diffusion schedule'),
    ('model.prediction', 'score', 'valid: velocity, epsilon, x0, v'),
    ('model.name', 'dit', 'valid: gmm, mlp, unet'),
    ('model.weights', (0.5, 0.6, 0.2), 'sum to 1'),
    ('model.stds', (0.5, 0.5), r'model.stds must have shape \[3\]'),
    ('reward.name', 'pickscore', 'Unknown reward'),
])
def test_sample_config_errors(tmp_path, field, value, message):
  config = gmm2d.get_config('quick,sample')
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(ValueError, match=message):
    _run(config, tmp_path)


def test_unknown_experiment():
  with pytest.raises(ValueError, match='valid: train, train_classifier, sample, search, '
                                       'compare, benchmark'):
    experiments.get_experiment('finetune')


def test_unknown_variant_and_dataset():
  with pytest.raises(ValueError, match='Unknown config variant'):
    gmm2d.get_config('huge')
  with pytest.raises(ValueError, match='valid: gmm, ring, moons, checkerboard'):
    toy2d.get_config('spirals')


def test_sampling_without_a_checkpoint(tmp_path):
  config = toy2d.get_config('moons,quick')
  config.experiment = 'sample'
  with pytest.raises(ValueError, match='model.checkpoint is empty'):
    _run(config, tmp_path)
  config.model.checkpoint = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='not a train run workdir'):
    _run(config, tmp_path)


def test_train_config_errors(tmp_path):
  config = toy2d.get_config('moons,quick')
  config.train.num_steps = 0
  with pytest.raises(ValueError, match='train.num_steps must be positive'):
    _run(config, tmp_path)

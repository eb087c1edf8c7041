"""Bad input fails with a clear message before anything is compiled."""

import os

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


def _with(config, field, value):
  """The config with SECTION.KEY set to value."""
  section, key = field.split('.')
  config[section][key] = value
  return config


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
    ('reward.name', 'clipscore', 'Unknown reward'),
])
def test_sample_config_errors(tmp_path, field, value, message):
  with pytest.raises(ValueError, match=message):
    _run(_with(gmm2d.get_config('quick,sample'), field, value), tmp_path)


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


NAN, INF = float('nan'), float('inf')


@pytest.mark.parametrize('variant,field,value,message', [
    # Non-finite values written in a config (abs(nan - 1) > tol is False: no silent pass).
    ('quick,sample', 'model.weights', (NAN, 0.5, 0.5), r'model.weights\[0\] must be a finite'),
    ('quick,sample', 'model.means', ((0.0, NAN), (0.0, 2.5), (3.0, -1.0)),
     r'model.means\[0\]\[1\] must be a finite'),
    ('quick,sample', 'model.stds', (0.5, INF, 0.4), r'model.stds\[1\] must be a finite'),
    ('quick,sample', 'sampler.diffusion_norm', INF, 'sampler.diffusion_norm must be a finite'),
    ('quick,smc', 'reward.weights', (1.0, NAN), r'reward.weights\[1\] must be a finite'),
    ('quick,smc', 'reward.temperature', NAN, 'reward.temperature must be a finite'),
    # What float32 and int32 cannot hold.
    ('quick,smc', 'reward.temperature', 1e-40, 'reward.temperature=1e-40 underflows float32'),
    ('quick,dts', 'reward.temperature', 1e-40, 'underflows float32'),
    ('quick,bon', 'reward.bias', 1e39, 'reward.bias=1e\\+39 overflows float32'),
    ('quick,smc', 'search.budget', 2**31, 'search.budget=2147483648 is out of range'),
    ('quick,smc', 'search.num_particles', 10**12, 'search.num_particles=.* out of range'),
    # Out of range for the method or the reward.
    ('quick,dts_star', 'search.c_uct', -1.0, 'search.c_uct must be a finite number >= 0'),
    ('quick,dts', 'search.widen_c', NAN, 'search.widen_c must be a finite'),
    ('quick,smc', 'search.ess_threshold', 1.5, r'ess_threshold must lie in \[0, 1\]'),
    ('quick,svdd', 'search.guidance_scale', NAN, 'search.guidance_scale must be a finite'),
    ('quick,smc', 'reward.temperature', -1.0, 'reward.temperature must be a positive finite'),
])
def test_non_finite_and_out_of_range_values_are_refused(tmp_path, variant, field, value, message):
  with pytest.raises(ValueError, match=message):
    _run(_with(gmm2d.get_config(variant), field, value), tmp_path)
  # Refused before anything was written (the workdir's lock file aside).
  assert set(os.listdir(tmp_path)) <= {'.lock'}


@pytest.mark.parametrize('reward,message', [
    (dict(name='mode_weighting', mode_std=0.0), 'reward.mode_std must be a positive'),
    (dict(name='mode_weighting', num_modes=0), 'reward.num_modes must be >= 1'),
    (dict(name='compressibility'), r'compressibility encodes images \[H, W, 1 or 3\]; this '
                                   r'backbone makes \(2,\)'),
    (dict(name='gaussian', width=0.0), 'reward.width must be a positive finite'),
])
def test_rewards_refuse_meaningless_settings(tmp_path, reward, message):
  config = gmm2d.get_config('quick,smc')
  config.reward.update(reward)
  with pytest.raises(ValueError, match=message):
    _run(config, tmp_path)


@pytest.mark.parametrize('value,message', [
    (NAN, 'train.learning_rate must be a finite number'),
    (-1e-3, 'train.learning_rate must be positive'),
    (0.0, 'train.learning_rate must be positive'),
])
def test_training_refuses_a_bad_learning_rate(tmp_path, value, message):
  config = toy2d.get_config('moons,quick')
  config.train.learning_rate = value
  with pytest.raises(ValueError, match=message):
    _run(config, tmp_path)
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_the_python_api_checks_too():
  """Builders called directly (not through an experiment) refuse the same values."""
  from models import gmm  # pylint: disable=g-import-not-at-top
  import search  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='model.weights must be finite'):
    gmm.make_params(((0.0, 0.0), (1.0, 1.0)), (0.5, 0.5), (NAN, 0.5))
  with pytest.raises(ValueError, match='model.means must be finite'):
    gmm.make_params(((0.0, INF), (1.0, 1.0)), (0.5, 0.5), (0.5, 0.5))
  cfg = gmm2d.get_config('quick,smc').search
  with pytest.raises(ValueError, match='reward.temperature=1e-40 underflows float32'):
    search.make_config(cfg, 1e-40, 10)
  cfg.budget = 2**31
  with pytest.raises(ValueError, match='past what the int32 NFE counters hold'):
    search.make_config(cfg, 1.0, 10)


def test_a_sweep_point_with_a_non_finite_preset_is_refused(tmp_path):
  from configs.figures import dts_2d  # pylint: disable=g-import-not-at-top
  config = dts_2d.get_config('quick')
  with config.unlocked():
    config.sweep.presets.method['bad'] = {'reward': {'temperature': NAN}}
  config.sweep.method = ('bad',)
  with pytest.raises(ValueError, match='sweep.presets.method.bad.reward.temperature must be a'):
    _run(config, tmp_path)
  # The grid checks each resolved point too (for callers of sweep.grid without the guard).
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='sweep point .*method=bad.*: reward.temperature must be a'):
    sweep.grid(config)


@pytest.mark.parametrize('field,value,message', [
    ('benchmark.methods', ('bon', 'greedy'), 'Unknown search.method'),
    ('search.budget', 7, 'too small for'),
    ('reward.name', 'clipscore', 'Unknown reward'),
])
def test_benchmark_errors_come_before_its_backbone_is_trained(tmp_path, field, value, message):
  from configs import benchmark as benchmark_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=message):
    _run(_with(benchmark_config.get_config('quick'), field, value), tmp_path)
  assert not os.path.exists(tmp_path / 'backbone')

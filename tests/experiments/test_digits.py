"""The digits domain at tiny sizes: U-Net backbones, the classifier reward, image metrics, the
host-callback reward, and search on images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewards
import search
from configs import digits as digits_config
from experiments.data import digits
from experiments.evaluation import metrics
from experiments import sample as sample_exp
from experiments import search as search_exp
from models.loading import trained
from rewards import analytic
from rewards import host
from tests.search import common


@pytest.fixture(scope='module')
def workdirs(digits_tiny):
  """Tiny flow and eps U-Nets and classifiers (tests/conftest.py, trained once per session)."""
  return digits_tiny


def _quick(variant, workdirs, kind='flow'):
  config = digits_config.get_config(f'{variant},quick')
  config.model.checkpoint = workdirs[kind]
  config.reward.checkpoint = workdirs['classifier']
  return config


@pytest.mark.parametrize('kind', ('flow', 'eps'))
def test_backbones_train_with_falling_loss_and_restore(workdirs, kind):
  m = workdirs[kind + '_metrics']
  assert m['final_loss'] < m['first_chunk_loss']
  backbone = trained.load(workdirs[kind])
  assert backbone.data_shape == digits.SHAPE
  assert backbone.prediction == ('velocity' if kind == 'flow' else 'epsilon')
  x = jnp.zeros((2,) + digits.SHAPE)
  assert backbone(x, jnp.full((2,), 0.5), 3).shape == x.shape           # conditional
  guided = trained.load(workdirs[kind], {'guidance_weight': 2.0})
  assert not np.allclose(guided(x, jnp.full((2,), 0.5), 3), backbone(x, jnp.full((2,), 0.5), 3))


def test_classifier_reward_sign_and_shape(workdirs):
  assert workdirs['classifier_metrics']['heldout_accuracy'] > 0.5
  cfg = _quick('svdd', workdirs).reward
  cfg.target_class = 3
  reward = rewards.get_reward(cfg, digits.SHAPE)
  x, y = digits.load('heldout')
  r = np.asarray(reward(jnp.asarray(x)))
  assert r.shape == (len(x),) and np.all(r <= 0)
  assert r[y == 3].mean() > r[y != 3].mean() + 1.0
  cfg.name = 'classifier_set'
  even = np.asarray(rewards.get_reward(cfg, digits.SHAPE)(jnp.asarray(x)))
  assert even[y % 2 == 0].mean() > even[y % 2 == 1].mean()
  cfg.target_class = 12
  cfg.name = 'classifier'
  with pytest.raises(ValueError, match='target_class must lie in 0..9'):
    rewards.get_reward(cfg, digits.SHAPE)


def test_classifier_logodds_and_per_row_target_classes(workdirs):
  cfg = _quick('svdd', workdirs).reward
  cfg.update(name='classifier_logodds', target_class=3)
  reward = rewards.get_reward(cfg, digits.SHAPE)
  x, _ = digits.load('heldout')
  x = jnp.asarray(x[:64])
  cfg.name = 'classifier'
  log_p = np.asarray(rewards.get_reward(cfg, digits.SHAPE)(x), np.float64)
  np.testing.assert_allclose(np.asarray(reward(x)), log_p - np.log1p(-np.exp(log_p)),
                             rtol=1e-4, atol=1e-4)
  # A batch of target classes travels in cond['target_class']; the backbone ignores that key.
  rows = jnp.arange(64) % 10
  per_row = np.asarray(reward(x, {'target_class': rows}))
  for c in (0, 7):
    cfg.update(name='classifier_logodds', target_class=c)
    single = np.asarray(rewards.get_reward(cfg, digits.SHAPE)(x))
    np.testing.assert_allclose(per_row[rows == c], single[rows == c], rtol=1e-5)


def test_search_towards_several_classes_at_once(workdirs, tmp_path):
  config = _quick('bon', workdirs)
  config.reward.update(target_classes=(1, 3))
  config.search.update(num_runs=2, num_particles=2, output='samples')
  metrics = search_exp.run(config, str(tmp_path))
  assert metrics['num_searches'] == 4 and metrics['nfe'] <= config.search.budget
  out = np.load(tmp_path / 'samples.npz')
  assert list(out['row_class']) == [1, 1, 1, 1, 3, 3, 3, 3]   # class-major, 2 runs x 2 draws
  for c in (1, 3):  # each saved reward is log p(its own row's class | x0)
    config.reward.target_class = c
    r = rewards.get_reward(config.reward, digits.SHAPE)(jnp.asarray(out['x0']))
    np.testing.assert_allclose(out['reward'][out['row_class'] == c],
                               np.asarray(r)[out['row_class'] == c], rtol=1e-4, atol=1e-5)
  assert {'frechet', 'accuracy', 'diversity'} <= set(metrics)
  config.reward.name = 'classifier_set'
  with pytest.raises(ValueError, match='target_classes needs the classifier'):
    search_exp.run(config, str(tmp_path / 'bad'))


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
  feats = np.random.default_rng(0).normal(size=(500, 8))
  assert metrics.frechet_distance(feats, feats) < 1e-6
  shifts = [metrics.frechet_distance(feats, feats + s) for s in (0.5, 1.0, 2.0)]
  assert 0 < shifts[0] < shifts[1] < shifts[2]
  np.testing.assert_allclose(shifts[1], 8 * 1.0**2, rtol=1e-6)  # |mu shift|^2, same cov


def test_heldout_frechet_sits_at_its_floor_for_real_digits_and_far_above_for_noise(workdirs):
  from experiments.evaluation import image_metrics  # pylint: disable=g-import-not-at-top
  x_train, y_train = digits.load('train')
  real = x_train[y_train == 3][:40]
  noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32)
  m_real, m_noise = (image_metrics.evaluate(x, workdirs['classifier'], 3,
                                            workdirs['classifier_heldout']) for x in (real, noise))
  # The floor is N real training digits of the class: real digits score it, noise does not.
  assert m_real['frechet_heldout_floor'] == m_noise['frechet_heldout_floor'] > 0
  assert m_real['frechet_heldout'] < 2 * m_real['frechet_heldout_floor']
  assert m_noise['frechet_heldout'] > 5 * m_noise['frechet_heldout_floor']


@pytest.mark.parametrize('method', [
    pytest.param(m, marks=pytest.mark.slow) if m in ('dts', 'dts_star') else m  # 27 s together
    for m in search.METHODS])
def test_host_callback_reward_selects_what_the_jax_reward_selects(method):
  w = np.array([1.0, 0.5], np.float32)
  jax_reward = analytic.linear(tuple(w))
  host_reward = host.host_reward(lambda x: x @ w)
  sampler = common.make_sampler('vp', num_steps=6)
  # Every method accepts a host reward and selects the same samples with it, but those that
  # differentiate the reward, which refuse it in one line.
  knobs = dict(psi_chains=2, psi_burn_in=2, psi_mcmc_steps=2) if method == 'psi' else {}
  a = common.run(method, sampler, jax_reward, budget=200, num_particles=4, **knobs)
  if search.get_method(method).needs_gradient:
    with pytest.raises(ValueError, match=f'search.method={method} needs a differentiable '
                                         'reward; this reward is not'):
      common.run(method, sampler, host_reward, budget=200, num_particles=4, **knobs)
    return
  b = common.run(method, sampler, host_reward, budget=200, num_particles=4)
  np.testing.assert_allclose(a.x0, b.x0, rtol=1e-5, atol=1e-5)
  assert int(a.nfe) == int(b.nfe)


def test_compressibility_reward():
  x, _ = digits.load('heldout')
  flat = -np.ones((2,) + digits.SHAPE, np.float32)
  kb = host.encoded_kilobytes(np.concatenate([flat, x[:2]]))
  assert kb[0] < kb[2] and kb[1] < kb[3]           # a blank image compresses best
  reward = host.compressibility('jpeg')
  r = np.asarray(jax.jit(reward)(jnp.asarray(x[:5])))
  assert r.shape == (5,) and np.all(r < 0)


def test_sampling_and_searching_digits(workdirs, tmp_path):
  config = _quick('sample', workdirs, 'eps')
  config.condition = 3
  m = sample_exp.run(config, str(tmp_path / 'sample'))
  assert {'frechet', 'accuracy', 'feature_diversity'} <= set(m)
  assert (tmp_path / 'sample' / 'samples.png').exists()
  config = _quick('svdd', workdirs)
  config.reward.name = 'compressibility'  # the host-callback reward inside a jitted search
  m = search_exp.run(config, str(tmp_path / 'svdd'))
  assert 0 < m['nfe'] <= config.search.budget and 'frechet' in m


@pytest.mark.slow  # 37 s: trains a teacher, its pairs and a student
def test_reflow_trains_on_the_teachers_own_couplings(digits_tiny, tmp_path):
  """configs/digits.py:reflow: the pairs are the teacher's Linear-ODE map of their noise, cached
  in the workdir (a rerun trains on the same ones), and training starts from the teacher."""
  from experiments.data import reflow  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  config = digits_config.get_config('reflow,quick')
  config.data.teacher = config.train.init_from = digits_tiny['flow']
  config.model.update(checkpoint=str(tmp_path))
  metrics = train.run(config, str(tmp_path))
  assert np.isfinite(metrics['final_loss'])
  with np.load(tmp_path / 'reflow_pairs.npz') as f:
    x0, eps = f['x0'], f['eps']
  assert x0.shape == eps.shape == (64, 8, 8, 1)
  again = reflow.generate(digits_tiny['flow'], 64, 4, config.seed)
  np.testing.assert_allclose(x0, again[0], atol=1e-5)
  np.testing.assert_array_equal(eps, again[1])
  teacher = trained.load(digits_tiny['flow'])
  student = trained.load(str(tmp_path))
  assert student.prediction == 'velocity' and student.data_shape == teacher.data_shape
  with pytest.raises(ValueError, match='reflow needs a flow teacher'):
    reflow.generate(digits_tiny['eps'], 8, 2, 0)

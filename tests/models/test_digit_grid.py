"""The digit-grid testbed: the tiled backbone, the counting and compositional rewards (exact
against enumeration), their metrics, and their errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import rewards
from configs import digit_grid as grid_config
from experiments.evaluation import image_metrics
from models import digit_grid
from rewards import digit_grid as grid_rewards

pytestmark = pytest.mark.usefixtures('fast_compilation')


def _config(digits_tiny, arg='count'):
  config = grid_config.get_config(arg + ',quick')
  config.model.checkpoint = digits_tiny['flow']
  config.reward.update(checkpoint=digits_tiny['classifier'],
                       heldout_checkpoint=digits_tiny['classifier_heldout'])
  return config


def test_cells_round_trip_row_major():
  x = jnp.arange(2 * 16 * 24).reshape(2, 16, 24, 1).astype(jnp.float32)
  cells = digit_grid.to_cells(x, (2, 3))
  assert cells.shape == (12, 8, 8, 1)
  np.testing.assert_array_equal(cells[4], x[0, 8:16, 8:16])   # image 0, row 1, column 1
  np.testing.assert_array_equal(digit_grid.from_cells(cells, (2, 3)), x)


def test_grid_backbone_is_the_cell_backbone_on_every_cell(digits_tiny):
  config = _config(digits_tiny)
  config.model.grid = (2, 2)
  grid = models.get_backbone(config.model)
  cell = models.get_backbone(config.model.__class__(dict(
      name='unet', checkpoint=digits_tiny['flow'], guidance_weight=0.0)))
  assert grid.data_shape == (16, 16, 1) and grid.prediction == cell.prediction
  x = jax.random.normal(jax.random.key(0), (3, 16, 16, 1))
  t = jnp.asarray([0.2, 0.5, 0.9])
  out = np.asarray(grid(x, t))
  cells = [(i, r, c) for i in range(3) for r in range(2) for c in range(2)]
  patches = jnp.stack([x[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8] for i, r, c in cells])
  want = np.asarray(cell(patches, jnp.asarray([t[i] for i, _, _ in cells])))
  for (i, r, c), w in zip(cells, want):
    np.testing.assert_allclose(out[i, 8 * r:8 * r + 8, 8 * c:8 * c + 8], w, atol=1e-5)


def _enumerate(p, event):
  """P(event(labels)) by enumerating every labelling of independent cells, p [cells, classes]."""
  total = 0.0
  for labels in itertools.product(range(p.shape[1]), repeat=p.shape[0]):
    if event(np.asarray(labels)):
      total += np.prod([p[i, l] for i, l in enumerate(labels)])
  return total


def test_probabilities_match_enumeration():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(3), size=(2, 3))     # a 2 x 3 grid, 3 classes
  flat = p.reshape(6, 3)
  for k in range(7):
    want = _enumerate(flat, lambda l: np.sum(l == 1) == k)
    got = grid_rewards.count_probability(jnp.asarray(flat[None, :, 1]), k)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
  for a, b in ((0, 1), (2, 2)):
    want = _enumerate(flat, lambda l: bool(grid_rewards.success(
        l.reshape(1, 2, 3), _Spec('digit_left_of', left_class=a, right_class=b))[0]))
    got = grid_rewards.left_of_probability(jnp.asarray(p[None, ..., a]),
                                           jnp.asarray(p[None, ..., b]), a == b)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


class _Spec(dict):
  def __init__(self, name, **fields):
    super().__init__(name=name, **fields)
    self.__dict__.update(self)


def test_success_counts_and_adjacency():
  labels = np.asarray([[[7, 7], [1, 2]], [[3, 7], [0, 0]], [[7, 3], [7, 1]]])
  count = _Spec('digit_count', count_class=7, count=2)
  np.testing.assert_array_equal(grid_rewards.success(labels, count), [True, False, True])
  left = _Spec('digit_left_of', left_class=3, right_class=7)
  np.testing.assert_array_equal(grid_rewards.success(labels, left), [False, True, False])


def test_rewards_agree_with_the_metrics(digits_tiny):
  config = _config(digits_tiny)
  backbone = models.get_backbone(config.model)
  x = jax.random.uniform(jax.random.key(1), (64,) + backbone.data_shape, minval=-1, maxval=1)
  soft = rewards.get_reward(config.reward, backbone.data_shape)
  r = np.asarray(soft(x))
  assert r.shape == (64,) and np.all(r <= 0) and np.all(np.isfinite(r))
  config.reward.step = True
  step = np.asarray(rewards.get_reward(config.reward, backbone.data_shape)(x))
  assert set(np.unique(step)) <= {0.0, 1.0}
  metrics = image_metrics.evaluate_grid(x, config.reward)
  np.testing.assert_allclose(metrics['success'], step.mean())
  assert 0 <= metrics['heldout_success'] <= 1


@pytest.mark.parametrize('fields,message', [
    (dict(count=3), r'reward.count must lie in 0..2 \(the grid has 2 cells\)'),
    (dict(count_class=10), r'reward.count_class must lie in 0..9'),
    (dict(name='digit_left_of', right_class=-1), r'reward.right_class must lie in 0..9'),
])
def test_bad_rewards_name_the_field(digits_tiny, fields, message):
  config = _config(digits_tiny)
  config.reward.update(fields)
  with pytest.raises(ValueError, match=message):
    rewards.get_reward(config.reward, (8, 16, 1))


def test_bad_shapes_and_grids(digits_tiny):
  config = _config(digits_tiny)
  with pytest.raises(ValueError, match=r'not a grid of the classifier\'s \(8, 8, 1\) cells'):
    rewards.get_reward(config.reward, (8, 12, 1))
  config.reward.name = 'digit_left_of'
  with pytest.raises(ValueError, match='at least 2 columns'):
    rewards.get_reward(config.reward, (16, 8, 1))
  config.model.grid = (2, 0)
  with pytest.raises(ValueError, match=r'model.grid must be \(rows, cols\) with both >= 1'):
    models.get_backbone(config.model)


def test_base_rates_judge_every_prompt_on_the_same_samples(digits_tiny, tmp_path):
  # pylint: disable=g-import-not-at-top
  import json
  from experiments.tools import grid_base_rates
  config = _config(digits_tiny, 'count,sample')
  run = tmp_path / 'flow_vp_sde'
  run.mkdir()
  (run / 'config.json').write_text(json.dumps(config.to_dict()))
  x0 = np.asarray(jax.random.uniform(jax.random.key(2), (32, 8, 16, 1), minval=-1, maxval=1))
  np.savez(run / 'samples.npz', x0=x0, reward=np.zeros(32))
  grid_base_rates.main(str(tmp_path))
  rows = json.loads((tmp_path / 'base_rates.json').read_text())
  assert [r['run'] for r in rows] == ['flow_vp_sde']
  for prompt, fields in grid_config.PROMPTS.items():
    reward = config.reward.copy_and_resolve_references()
    reward.update(fields)
    want = image_metrics.evaluate_grid(x0, reward)
    assert rows[0][f'{prompt}/heldout_success'] == want['heldout_success']
  assert 'count held-out' in (tmp_path / 'base_rates.md').read_text()

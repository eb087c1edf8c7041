"""Counting and compositional rewards on grids of digits (models/digit_grid.py), scored by the
8x8 digit classifier applied to every cell.

  digit_count    "exactly k digits c": r = log P(#{cells of class c} = k), the count's law when
                 each cell is class c with the classifier's probability p_i (a Poisson-binomial,
                 computed exactly over the cells). reward.count_class = c, reward.count = k.
  digit_left_of  "a digit a left of a digit b": r = log P(some row has a cell of class a
                 immediately left of a cell of class b), exact over each row's cells and
                 independent rows. reward.left_class = a, reward.right_class = b.

At lambda = 1 the tilted target p(x) P(success | x) is the base model conditioned on the prompt
being true (as the classifier judges it). With reward.step = True the reward is the step
function 1[success] of the cells' argmax labels instead: it rarely improves along a path, like a
detector's count. With reward.count_error = True (digit_count) it is the RBF paper's counting
reward, -(count - k)^2 of the argmax labels: an integer, like the paper's detector count.
`success` judges labels from any classifier (the held-out one in the metrics).
"""

import jax.numpy as jnp
import numpy as np

from models import digit_grid
from rewards import base
from rewards import classifier as classifier_lib


def grid_of(shape, cell_shape) -> tuple:
  """(rows, cols) of images `shape` made of cells `cell_shape`."""
  h, w, c = shape
  ch, cw, cc = cell_shape
  if c != cc or h % ch or w % cw:
    raise ValueError(f'images of shape {tuple(shape)} are not a grid of the classifier\'s '
                     f'{tuple(cell_shape)} cells.')
  return h // ch, w // cw


def cell_log_probs(log_probs, x, grid):
  """log p(class | cell) [N, rows, cols, classes] of images x [N, H, W, C]."""
  lp = log_probs(digit_grid.to_cells(x, grid))
  return lp.reshape(x.shape[0], grid[0], grid[1], lp.shape[-1])


def count_probability(p, k: int):
  """P(exactly k successes) of independent Bernoullis p [N, n] (exact, O(n^2))."""
  n = p.shape[-1]
  law = jnp.zeros(p.shape[:-1] + (n + 1,), p.dtype).at[..., 0].set(1.0)
  for i in range(n):
    pi = p[..., i:i + 1]
    law = law * (1.0 - pi) + jnp.pad(law[..., :-1], [(0, 0)] * (p.ndim - 1) + [(1, 0)]) * pi
  return law[..., k]


def left_of_probability(pa, pb, same: bool):
  """P(some row has an a immediately left of a b) for independent cells with P(a) = pa and
  P(b) = pb, [N, rows, cols] -> [N]. same: a and b are the same class."""
  m0 = jnp.ones(pa.shape[:-1], pa.dtype)   # no match yet, previous cell not a
  m1 = jnp.zeros_like(m0)                  # no match yet, previous cell a
  for j in range(pa.shape[-1]):
    a, b = pa[..., j], pb[..., j]
    if same:
      m0, m1 = (m0 + m1) * (1.0 - a), m0 * a
    else:
      m0, m1 = m0 * (1.0 - a) + m1 * (1.0 - a - b), (m0 + m1) * a
  no_match_in_row = jnp.clip(m0 + m1, 0.0, 1.0)
  return 1.0 - jnp.prod(no_match_in_row, axis=-1)


def success(labels, cfg, xp=np):
  """Whether each image's cell labels [N, rows, cols] make the prompt true: [N] bool. xp: numpy
  on the host, jax.numpy inside the reward."""
  if cfg.name == 'digit_count':
    return xp.sum(labels == int(cfg.count_class), axis=(1, 2)) == int(cfg.count)
  a, b = int(cfg.left_class), int(cfg.right_class)
  return xp.any((labels[:, :, :-1] == a) & (labels[:, :, 1:] == b), axis=(1, 2))


def _probability(cfg, lp):
  p = jnp.exp(lp)
  if cfg.name == 'digit_count':
    rows_cols = p.shape[1] * p.shape[2]
    return count_probability(p[..., int(cfg.count_class)].reshape(-1, rows_cols),
                             int(cfg.count))
  a, b = int(cfg.left_class), int(cfg.right_class)
  return left_of_probability(p[..., a], p[..., b], a == b)


def _check(cfg, module, grid) -> None:
  classes = module.num_classes
  if cfg.name == 'digit_count':
    fields = {'count_class': int(cfg.count_class)}
    cells = grid[0] * grid[1]
    if not 0 <= int(cfg.count) <= cells:
      raise ValueError(f'reward.count must lie in 0..{cells} (the grid has {cells} cells), '
                       f'got {cfg.count}.')
  else:
    fields = {'left_class': int(cfg.left_class), 'right_class': int(cfg.right_class)}
    if grid[1] < 2:
      raise ValueError(f'reward digit_left_of needs a grid of at least 2 columns, got {grid}.')
  if cfg.get('count_error') and cfg.name != 'digit_count':
    raise ValueError(f'reward.count_error is the counting reward of digit_count, not of '
                     f'{cfg.name}.')
  if cfg.get('count_error') and cfg.step:
    raise ValueError('reward.count_error and reward.step are two rewards; set one.')
  for field, value in fields.items():
    if not 0 <= value < classes:
      raise ValueError(f'reward.{field} must lie in 0..{classes - 1}, got {value}.')


def build(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  name = cfg.name
  if not cfg.get('checkpoint'):
    raise ValueError(f'reward {name} needs reward.checkpoint (a train_classifier workdir).')
  module, params, cell_shape = classifier_lib.load(cfg.checkpoint)
  grid = grid_of(shape, cell_shape)
  _check(cfg, module, grid)
  log_probs = lambda p, x: cell_log_probs(classifier_lib.log_probs_fn(module, p), x, grid)
  step, count_error = bool(cfg.step), bool(cfg.get('count_error', False))
  frozen = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
  spec = _Spec(name, frozen)

  def fn(p, x0, cond=None):
    del cond
    lp = log_probs(p, x0)
    if step:
      return success(jnp.argmax(lp, -1), spec, jnp).astype(jnp.float32)
    if count_error:
      count = jnp.sum(jnp.argmax(lp, -1) == spec.count_class, axis=(1, 2))
      return -jnp.square(count - spec.count).astype(jnp.float32)
    return jnp.log(jnp.maximum(_probability(spec, lp), jnp.finfo(jnp.float32).tiny))
  return base.Reward(name, fn, params)


class _Spec:
  """The reward's fields, read once on the host (the jitted reward closes over numbers)."""

  def __init__(self, name, fields):
    self.name = name
    self.count_class, self.count = fields['count_class'], fields['count']
    self.left_class, self.right_class = fields['left_class'], fields['right_class']


# count_class, count: "exactly `count` digits `count_class`"; left_class, right_class: "a
# left_class immediately left of a right_class"; step: the 0/1 success of the argmax labels
# instead of the log-probability of success; count_error: -(count - k)^2 of the argmax labels
# (digit_count; the RBF paper's counting reward).
_FIELDS = dict(checkpoint='', count_class=7, count=2, left_class=3, right_class=7, step=False,
               count_error=False)
REWARDS = (
    base.RewardKind(build, _FIELDS, order=13, name='digit_count', evaluation='cells'),
    base.RewardKind(build, _FIELDS, order=14, name='digit_left_of', evaluation='cells'),
)

"""A grid of digits: images of rows x cols cells, each cell an independent draw of a trained 8x8
digits backbone (the testbed of docs/results.md, "Counting and composition").

  model.checkpoint  a digits `train` run (configs/digits.py:flow or :eps)
  model.grid        (rows, cols)
  model.guidance_weight, as for `unet`

States are [B, 8 rows, 8 cols, 1]: one call of the backbone evaluates every cell of every image
as one batch of B * rows * cols cells, so an image costs one NFE, as an image of a text-to-image
model does. The cells are independent under the base model, so a property of the whole image
(how many sevens, which digit is left of which) is rare by construction and has a base rate
that follows from the per-cell class frequencies: the search has something to find.
"""

import jax.numpy as jnp

from models.loading import trained
from models.backbone import Backbone, BackboneKind


def check_grid(grid) -> tuple:
  grid = tuple(int(g) for g in grid)
  if len(grid) != 2 or min(grid) < 1:
    raise ValueError(f'model.grid must be (rows, cols) with both >= 1, got {grid}.')
  return grid


def to_cells(x, grid):
  """[B, rows * h, cols * w, C] -> [B * rows * cols, h, w, C], row-major over the cells."""
  rows, cols = grid
  b, hh, ww, c = x.shape
  h, w = hh // rows, ww // cols
  return x.reshape(b, rows, h, cols, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def from_cells(cells, grid):
  """The inverse of to_cells."""
  rows, cols = grid
  n, h, w, c = cells.shape
  b = n // (rows * cols)
  return cells.reshape(b, rows, cols, h, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, rows * h, cols * w, c)


def tile(cell: Backbone, grid) -> Backbone:
  """The grid backbone of a cell backbone: same prediction type and interpolant."""
  grid = check_grid(grid)
  if len(cell.data_shape) != 3:
    raise ValueError(f'model.checkpoint must hold an image backbone [H, W, C]; it makes '
                     f'{cell.data_shape}.')
  h, w, c = cell.data_shape
  per_image = grid[0] * grid[1]

  def apply_fn(params, x, t, cond=None):
    label = cond.get('label') if isinstance(cond, dict) else cond
    cell_cond = None if label is None else jnp.repeat(
        jnp.broadcast_to(jnp.asarray(label, jnp.int32), x.shape[:1]), per_image)
    out = cell.apply_fn(params, to_cells(x, grid), jnp.repeat(t, per_image), cell_cond)
    return from_cells(out, grid)

  return Backbone(params=cell.params, apply_fn=apply_fn, prediction=cell.prediction,
                  interpolant=cell.interpolant, data_shape=(grid[0] * h, grid[1] * w, c))


def build(cfg) -> Backbone:
  grid = check_grid(cfg.get('grid', (2, 2)))
  return tile(trained.build(cfg), grid)


BACKBONE = BackboneKind(build, order=3)

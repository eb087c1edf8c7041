"""Figures for 2D runs, sweeps and image grids (matplotlib; PIL for full-size grids).

Figures are built with matplotlib's object API (`Figure`), not pyplot, so that writing them
never touches the global backend: a notebook that imports this keeps its inline plots.

Like every file of a run, figures are written by process 0 only (experiments/files.is_writer).
"""

import functools
import textwrap

from matplotlib.figure import Figure
import numpy as np

from experiments import files
from samplers.ground import pixels


def _writer_only(fn):
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    if files.is_writer():
      fn(*args, **kwargs)
  return wrapped


def _subplots(*args, figsize, dpi, **kwargs):
  fig = Figure(figsize=figsize, dpi=dpi)
  return fig, fig.subplots(*args, **kwargs)


@_writer_only
def scatter_2d(path: str, samples, reference, title: str = '') -> None:
  """Samples (blue) over reference points (grey), saved as a PNG."""
  samples, reference = np.asarray(samples), np.asarray(reference)
  fig, ax = _subplots(figsize=(4.5, 4.5), dpi=110)
  ax.scatter(reference[:, 0], reference[:, 1], s=2, c='0.7', alpha=0.5, label='reference')
  ax.scatter(samples[:, 0], samples[:, 1], s=2, c='tab:blue', alpha=0.6, label='samples')
  ax.set_aspect('equal')
  ax.set_title(title, fontsize=9)
  ax.legend(loc='upper right', fontsize=7, markerscale=4)
  fig.tight_layout()
  fig.savefig(path)


@_writer_only
def panels_2d(path: str, panels: dict, reference, reference_label: str, titles: dict) -> None:
  """One scatter panel per entry of `panels` ({name: samples [N, 2]}) over reference points."""
  reference = np.asarray(reference)
  n = len(panels)
  cols = min(4, n)
  rows = (n + cols - 1) // cols
  fig, axes = _subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), dpi=100,
                        squeeze=False)
  everything = np.concatenate([reference] + [np.asarray(x) for x in panels.values()])
  lo, hi = everything.min(0) - 0.5, everything.max(0) + 0.5
  for ax, (name, x) in zip(axes.flat, panels.items()):
    x = np.asarray(x)
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c='0.75', alpha=0.5,
               label=reference_label)
    ax.scatter(x[:, 0], x[:, 1], s=6 if len(x) < 200 else 2, c='tab:red', alpha=0.7,
               label='samples')
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect('equal')
    ax.set_title(titles.get(name, name), fontsize=8)
    ax.tick_params(labelsize=6)
  for ax in list(axes.flat)[n:]:
    ax.axis('off')
  axes.flat[0].legend(loc='lower left', fontsize=6, markerscale=3)
  fig.tight_layout()
  fig.savefig(path)


@_writer_only
def image_grid(path: str, images, columns: int = 16, title: str = '') -> None:
  """Images [N, H, W, 1] in [-1, 1] as one grayscale grid PNG."""
  images = np.asarray(pixels.signed_to_unit(np.asarray(images)[..., 0]))
  n, h, w = images.shape
  columns = min(columns, n)
  rows = (n + columns - 1) // columns
  canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1))
  for i, img in enumerate(images):
    r, c = divmod(i, columns)
    canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = img
  fig, ax = _subplots(figsize=(columns * 0.45 + 0.3, rows * 0.45 + 0.5), dpi=100)
  ax.imshow(canvas, cmap='gray_r', vmin=0, vmax=1, interpolation='nearest')
  ax.axis('off')
  ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path)


@_writer_only
def save_rgb_grid(path: str, images, columns: int = 8) -> None:
  """uint8 images [N, H, W, 3] tiled at full resolution into one PNG (PIL, no resampling)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = np.asarray(images, np.uint8)
  n, h, w, c = images.shape
  columns = min(columns, n)
  rows = (n + columns - 1) // columns
  canvas = np.full((rows * (h + 2) + 2, columns * (w + 2) + 2, c), 255, np.uint8)
  for i, img in enumerate(images):
    r, col = divmod(i, columns)
    canvas[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + col * (w + 2):2 + col * (w + 2) + w] = img
  Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(path)


@_writer_only
def sweep_figure(path: str, summary, metric: str, x: str, series: str, panel: str = '',
                 logx: bool = False, logy: bool = False, title: str = '',
                 overlays=None) -> None:
  """A sweep's summary rows as one subplot per `panel` value: `metric` (mean, error bars the
  95% confidence interval of the mean over seeds) against axis `x`, one line per `series`
  value; grouped bars where x is categorical. overlays {label: value}: a number is drawn as a
  dotted horizontal line (a sampling floor, a base rate), a string names another metric whose
  mean over the panel's rows is drawn so (a floor measured per task), ((x, y), ...) as a
  dashed black curve (a paper's points)."""
  panels = list(dict.fromkeys(e.get(panel) for e in summary)) if panel else [None]
  fig, axes = _subplots(1, len(panels), figsize=(4.2 * len(panels) if panel else 6.4, 3.8),
                        dpi=110, squeeze=False)
  for ax, pv in zip(axes[0], panels):
    rows = [e for e in summary if not panel or e.get(panel) == pv]
    names = list(dict.fromkeys(e[series] for e in rows))
    xs = list(dict.fromkeys(e[x] for e in rows))
    numeric = all(isinstance(v, (int, float)) for v in xs)
    for i, name in enumerate(names):
      pts = [(e[x], e[metric], e.get(metric + '_ci95') or 0.0) for e in rows
             if e[series] == name and e.get(metric) is not None]
      if not pts:
        continue
      if numeric:
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker='o', ms=3, capsize=2, label=str(name))
      else:
        width = 0.8 / len(names)
        pos = [xs.index(p[0]) + (i - (len(names) - 1) / 2) * width for p in pts]
        ax.bar(pos, [p[1] for p in pts], width, yerr=[p[2] for p in pts], capsize=2,
               label=str(name))
    for j, (label, value) in enumerate((overlays or {}).items()):
      if isinstance(value, str):
        vals = [e[value] for e in rows if e.get(value) is not None]
        if vals:
          ax.axhline(float(np.mean(vals)), color='0.3', ls=':', lw=1, label=label)
      elif isinstance(value, (int, float)):
        ax.axhline(float(value), color='0.3', ls=':', lw=1, label=label)
      elif numeric:
        px, py = zip(*value)
        ax.plot(px, py, ls='--', color='k', marker='xs^v'[j % 4], ms=4, lw=0.8, label=label)
    if numeric and logx:
      ax.set_xscale('log')
    if logy:
      ax.set_yscale('log')
    if not numeric:
      ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, fontsize=7)
    ax.set_xlabel('NFE' if x == 'budget' else x)
    ax.set_ylabel(f'{metric} (95% CI)')
    ax.set_title(f'{panel} = {pv}' if panel else textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if panel and title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path)

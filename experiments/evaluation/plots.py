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
      return fn(*args, **kwargs)
    return None
  return wrapped


# Okabe and Ito's colour-blind-safe palette, then Tol's muted colours (black is kept for the
# papers' reference curves, grey for reference points), and markers: series stay apart in
# print and for every kind of colour vision. Past 11 series the line style changes too.
COLOURS = ('#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#F0E442',
           '#882255', '#44AA99', '#999933', '#332288')
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', 'h', '<', '>')
LINESTYLES = ('-', '--', ':')
REFERENCE = '0.72'

# Axis labels of the metrics and axes the figures plot, with units and which way is better.
LABELS = {
    'best_reward': 'best reward found (higher is better)',
    'reward_mean': 'mean reward of the outputs (higher is better)',
    'reward_max': 'largest reward among the outputs (higher is better)',
    'energy_distance': 'energy distance to the target (lower is better)',
    'mmd': 'MMD to the target (lower is better)',
    'mmd2': 'squared MMD to the target (lower is better)',
    'mmd_median': 'MMD to the target, median-heuristic bandwidth (lower is better)',
    'mmd2_median': 'squared MMD to the target, median-heuristic bandwidth (lower is better)',
    'frechet': 'Fréchet distance to real digits (lower is better)',
    'frechet_exact': 'Fréchet distance to the exact target (lower is better)',
    'accuracy': 'classifier accuracy on the target (higher is better)',
    'diversity': 'mean pairwise distance within a search (higher is more diverse)',
    'feature_diversity': 'feature diversity (higher is more diverse)',
    'heldout_success': 'held-out success rate (higher is better)',
    'success': 'success rate (higher is better)',
    'heldout_accuracy': 'held-out classifier accuracy (higher is better)',
    'heldout_log_prob': 'held-out log-probability of the target (higher is better)',
    'frechet_heldout': 'Fréchet distance, held-out features (lower is better)',
    'wall_s': 'wall time (s)',
    'compile_s': 'compile time (s)',
    'us_per_nfe': 'time per NFE (µs)',
    'budget': 'NFE budget',
    'nfe': 'NFEs spent',
    'peak_mib': 'peak memory (MiB)',
}


def label(name: str) -> str:
  """The axis label of a metric or axis: LABELS, else its name in words."""
  return LABELS.get(name, str(name).replace('_', ' '))


def _subplots(*args, figsize, dpi, **kwargs):
  fig = Figure(figsize=figsize, dpi=dpi)
  return fig, fig.subplots(*args, **kwargs)


def _outside_legend(fig, ax, **kwargs) -> None:
  """A legend below the axes, never over the data."""
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    fig.legend(handles, labels, loc='lower center', ncol=min(len(handles), 4), fontsize=8,
               frameon=False, **kwargs)


@_writer_only
def scatter_2d(path: str, samples, reference, title: str = '') -> None:
  """Samples (blue) over reference points (grey), saved as a PNG."""
  samples, reference = np.asarray(samples), np.asarray(reference)
  fig, ax = _subplots(figsize=(4.8, 5.2), dpi=120)
  ax.scatter(reference[:, 0], reference[:, 1], s=2, c=REFERENCE, alpha=0.5,
             label='reference')
  ax.scatter(samples[:, 0], samples[:, 1], s=3, c=COLOURS[0], alpha=0.7, label='samples')
  ax.set_aspect('equal')
  ax.set_xlabel('$x_1$', fontsize=9)
  ax.set_ylabel('$x_2$', fontsize=9)
  ax.set_title(textwrap.fill(title, 60), fontsize=9)
  _outside_legend(fig, ax, markerscale=4)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  fig.savefig(path)


@_writer_only
def panels_2d(path: str, panels: dict, reference, reference_label: str, titles: dict,
              title: str = '') -> None:
  """One scatter panel per entry of `panels` ({name: samples [N, 2]}) over reference points,
  with shared axes ($x_1$, $x_2$), a legend below the panels and an overall title."""
  reference = np.asarray(reference)
  n = len(panels)
  cols = min(4, n)
  rows = (n + cols - 1) // cols
  fig, axes = _subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows + 0.8), dpi=110,
                        squeeze=False)
  everything = np.concatenate([reference] + [np.asarray(x) for x in panels.values()])
  lo, hi = everything.min(0) - 0.5, everything.max(0) + 0.5
  for i, (ax, (name, x)) in enumerate(zip(axes.flat, panels.items())):
    x = np.asarray(x)
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c=REFERENCE, alpha=0.5,
               label=reference_label)
    ax.scatter(x[:, 0], x[:, 1], s=6 if len(x) < 200 else 2, c=COLOURS[1], alpha=0.7,
               label='samples of the method')
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect('equal')
    ax.set_title(titles.get(name, name), fontsize=8)
    ax.tick_params(labelsize=7)
    if i % cols == 0:
      ax.set_ylabel('$x_2$', fontsize=8)
    if i >= n - cols:
      ax.set_xlabel('$x_1$', fontsize=8)
  for ax in list(axes.flat)[n:]:
    ax.axis('off')
  _outside_legend(fig, axes.flat[0], markerscale=3)
  if title:
    fig.suptitle(title, fontsize=10)
  height = 3.3 * rows + 0.8
  fig.tight_layout(rect=(0, 0.5 / height, 1, 1 - (0.35 / height if title else 0)))
  fig.savefig(path)


@_writer_only
def image_grid(path: str, images, columns: int = 16, title: str = '') -> None:
  """Images [N, H, W, 1] in [-1, 1] as one grayscale grid PNG."""
  images = np.asarray(pixels.signed_to_unit(np.asarray(images)[..., 0]))
  n, h, w = images.shape
  columns = min(columns, n)
  rows = (n + columns - 1) // columns
  canvas = np.zeros((rows * (h + 1) + 1, columns * (w + 1) + 1))   # white between images
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
def save_rgb_grid(path: str, images, columns: int = 8, title: str = '', captions=None) -> None:
  """uint8 images [N, H, W, 3] tiled into one PNG (PIL, no resampling; images smaller than
  128 pixels are enlarged by whole factors, nearest neighbour), under a header of `title`
  (the prompt, the method, the NFEs) and with captions[i] (the image's reward) below each."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  images = np.asarray(images, np.uint8)
  n, h, w, c = images.shape
  factor = max(1, -(-128 // max(h, w)))
  if factor > 1:
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    h, w = h * factor, w * factor
  columns = min(columns, n)
  rows = (n + columns - 1) // columns
  font = ImageFont.load_default(size=max(12, min(w // 10, 24)))
  line = int(font.size * 1.4)
  caption_h = line if captions is not None else 0
  header = textwrap.wrap(title, max(20, columns * (w + 4) // (font.size * 0.6))) if title else []
  top = len(header) * line + (line // 2 if header else 0)
  canvas = np.full((top + rows * (h + caption_h + 4) + 2, columns * (w + 4) + 2, 3), 255,
                   np.uint8)
  for i, img in enumerate(images):
    r, col = divmod(i, columns)
    y, x = top + 2 + r * (h + caption_h + 4), 2 + col * (w + 4)
    canvas[y:y + h, x:x + w] = img if c == 3 else img[..., :1]
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  for j, text in enumerate(header):
    draw.text((4, 2 + j * line), text, fill=(0, 0, 0), font=font)
  for i, text in enumerate(captions if captions is not None else ()):
    r, col = divmod(i, columns)
    y, x = top + 2 + r * (h + caption_h + 4) + h, 2 + col * (w + 4)
    draw.text((x + 2, y + 1), str(text), fill=(40, 40, 40), font=font)
  picture.save(path)


@_writer_only
def sweep_figure(path: str, summary, metric: str, x: str, series: str, panel: str = '',
                 logx: bool = False, logy: bool = False, title: str = '',
                 overlays=None, statistic: str = 'mean over seeds, 95% CI') -> None:
  """A sweep's summary rows as one subplot per `panel` value: `metric` (mean, error bars the
  95% confidence interval of the mean over seeds) against axis `x`, one line per `series`
  value, each its own colour and marker; grouped bars where x is categorical. overlays
  {label: value}: a number is drawn as a dotted horizontal line (a sampling floor, a base
  rate), a string names another metric whose mean over the panel's rows is drawn so (a floor
  measured per task), ((x, y), ...) as a dashed black curve (a paper's points).

  On a log y axis an interval that reaches zero or below cannot be drawn: its lower bar stops
  at a tenth of the mean and ends in an open marker (the figure's note says so). A metric
  whose means are not all positive is drawn on a linear y axis whatever logy says."""
  panels = list(dict.fromkeys(e.get(panel) for e in summary)) if panel else [None]
  all_names = list(dict.fromkeys(e[series] for e in summary))
  # A metric with a mean at or below zero (a log-probability reward) has no log axis: linear.
  logy = logy and all(e[metric] > 0 for e in summary if e.get(metric) is not None)
  style = {name: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)],
                 LINESTYLES[(i // len(COLOURS)) % len(LINESTYLES)])
           for i, name in enumerate(all_names)}
  fig, axes = _subplots(1, len(panels), figsize=(4.4 * len(panels) if panel else 6.6, 4.6),
                        dpi=120, squeeze=False, sharey=bool(panel))
  clipped_any = False
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
      colour, marker, linestyle = style[name]
      means = np.asarray([p[1] for p in pts], np.float64)
      ci = np.asarray([p[2] for p in pts], np.float64)
      lower = ci
      if logy:
        lower = np.minimum(ci, 0.9 * np.abs(means))
        clipped = ci > lower
        clipped_any |= bool(clipped.any())
      if numeric:
        order = np.argsort([p[0] for p in pts])
        px = np.asarray([p[0] for p in pts])[order]
        ax.errorbar(px, means[order], yerr=[lower[order], ci[order]], marker=marker, ms=4,
                    capsize=2, lw=1.2, color=colour, ls=linestyle, label=str(name))
        if logy and clipped.any():
          ax.plot(px[clipped[order]], (means - lower)[order][clipped[order]], ls='none',
                  marker='v', mfc='none', color=colour, ms=5)
      else:
        width = 0.8 / len(names)
        pos = [xs.index(p[0]) + (i - (len(names) - 1) / 2) * width for p in pts]
        ax.bar(pos, means, width, yerr=[lower, ci], capsize=2, color=colour,
               label=str(name))
    for j, (name, value) in enumerate((overlays or {}).items()):
      if isinstance(value, str):
        vals = [e[value] for e in rows if e.get(value) is not None]
        if vals:
          ax.axhline(float(np.mean(vals)), color='0.3', ls=':', lw=1.2, label=name)
      elif isinstance(value, (int, float)):
        ax.axhline(float(value), color='0.3', ls=':', lw=1.2, label=name)
      elif numeric:
        px, py = zip(*value)
        ax.plot(px, py, ls='--', color='k', marker='xs^v'[j % 4], ms=4, lw=0.8, label=name)
    if numeric and logx:
      ax.set_xscale('log')
    if logy:
      ax.set_yscale('log')
    if not numeric:
      ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, ha='right', fontsize=8)
    ax.set_xlabel(label(x) + (' (log scale)' if numeric and logx else ''), fontsize=9)
    if ax is axes[0][0]:
      ax.set_ylabel(label(metric) + '\n' + statistic, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(f'{label(panel)}: {pv}' if panel else textwrap.fill(title, 70), fontsize=9)
    ax.grid(alpha=0.3)
  handles = {}
  for ax in axes[0]:
    for h, l in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(l, h)
  fig.legend(list(handles.values()), list(handles), loc='center left',
             bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
  if panel and title:
    fig.suptitle(textwrap.fill(title, 110), fontsize=10)
  if clipped_any:
    fig.text(0.01, 0.005, 'open triangles: the 95% interval reaches zero or below (cut at a '
             'tenth of the mean on the log axis)', fontsize=7, color='0.3')
  fig.tight_layout(rect=(0, 0.03 if clipped_any else 0, 1, 1))
  fig.savefig(path, bbox_inches='tight')
  return fig

"""Figures for 2D runs (matplotlib, Agg backend)."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def scatter_2d(path: str, samples, reference, title: str = '') -> None:
  """Samples (blue) over reference points (grey), saved as a PNG."""
  samples, reference = np.asarray(samples), np.asarray(reference)
  fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
  ax.scatter(reference[:, 0], reference[:, 1], s=2, c='0.7', alpha=0.5, label='reference')
  ax.scatter(samples[:, 0], samples[:, 1], s=2, c='tab:blue', alpha=0.6, label='samples')
  ax.set_aspect('equal')
  ax.set_title(title, fontsize=9)
  ax.legend(loc='upper right', fontsize=7, markerscale=4)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)

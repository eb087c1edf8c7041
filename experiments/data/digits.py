"""scikit-learn's 8x8 digits (1,797 images, 10 classes) as [N, 8, 8, 1] in [-1, 1].

A fixed stratified split keeps 20% held out (seed 0): backbones and the classifier train on
`train`; Frechet distances and classifier accuracy are measured on `heldout`.
"""

import functools

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn import model_selection

SHAPE = (8, 8, 1)
NUM_CLASSES = 10
SPLITS = ('train', 'heldout')


@functools.lru_cache(maxsize=None)
def _split():
  x, y = sk_datasets.load_digits(return_X_y=True)
  x = (x.reshape(-1, *SHAPE) / 8.0 - 1.0).astype(np.float32)
  return model_selection.train_test_split(x, y.astype(np.int32), test_size=0.2,
                                          stratify=y, random_state=0)


def load(split: str):
  """(images [N, 8, 8, 1] float32 in [-1, 1], labels [N] int32)."""
  x_train, x_held, y_train, y_held = _split()
  if split == 'train':
    return x_train, y_train
  if split == 'heldout':
    return x_held, y_held
  raise ValueError(f'Unknown split {split!r}; valid: {", ".join(SPLITS)}.')

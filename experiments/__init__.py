"""Experiments chosen by `config.experiment`; each module's run(config, workdir) -> metrics."""

import importlib

EXPERIMENTS = ('train', 'train_classifier', 'sample', 'search', 'compare', 'benchmark', 'sweep')


def get_experiment(name: str):
  """The run(config, workdir) function of experiment `name`."""
  if name not in EXPERIMENTS:
    raise ValueError(f'Unknown experiment {name!r}; valid: {", ".join(EXPERIMENTS)}.')
  return importlib.import_module(f'experiments.{name}').run

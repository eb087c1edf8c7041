"""Experiments chosen by `config.experiment`; each module's run(config, workdir) -> metrics."""

import functools
import importlib

EXPERIMENTS = ('train', 'train_classifier', 'sample', 'search', 'compare', 'benchmark', 'sweep')


def get_experiment(name: str):
  """The run(config, workdir) function of experiment `name`, guarded: every number in the
  config is checked (experiments/validation.py) and the workdir is locked for the run, so two
  processes never share one (experiments/files.py)."""
  if name not in EXPERIMENTS:
    raise ValueError(f'Unknown experiment {name!r}; valid: {", ".join(EXPERIMENTS)}.')
  run = importlib.import_module(f'experiments.{name}').run

  @functools.wraps(run)
  def guarded(config, workdir: str) -> dict:
    # pylint: disable=g-import-not-at-top
    from experiments import files
    from experiments import validation
    validation.check_numbers(config)
    with files.workdir_lock(workdir):
      return run(config, workdir)
  return guarded

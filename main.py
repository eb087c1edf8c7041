"""Runs one experiment: python main.py --config=configs/NAME.py[:VARIANT] --workdir=DIR.

The experiment is chosen by `config.experiment` (see experiments/__init__.py); any config field
can be overridden, e.g. --config.sampler.interpolant=vp --config.sampler.sde=true.
"""

import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'gmm2d.py'),
    'Experiment config file, configs/NAME.py[:VARIANT].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the run\'s outputs.')
flags.mark_flag_as_required('workdir')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Run as one process of a multi-host job (jax.distributed); the mesh '
    'then spans every process\'s devices and only process 0 writes the workdir.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'HOST:PORT of process 0 (auto-detected on TPU pods).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index.')


def _quiet_library_logs(record) -> bool:
  """Keeps our INFO lines; drops orbax's and jax's own chatter below WARNING."""
  noisy = ('orbax' in record.pathname or 'jax/_src' in record.pathname
           or 'matplotlib' in record.pathname)
  return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_logger().addFilter(_quiet_library_logs)
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
  if _DISTRIBUTED.value:
    import jax  # pylint: disable=g-import-not-at-top
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import experiments  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  try:
    run = experiments.get_experiment(config.experiment)
    metrics = run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    # Configuration and input errors: every builder validates before any compilation.
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  if config.experiment in ('compare', 'benchmark', 'sweep') or not _is_process_zero():
    return  # they print their own tables; one process prints for a multi-host job
  for key, value in sorted(metrics.items()):
    print(f'{key:>20s}: {value:.6g}' if isinstance(value, float) else f'{key:>20s}: {value}')


def _is_process_zero() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


if __name__ == '__main__':
  app.run(main)

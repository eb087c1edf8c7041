"""Runs one experiment: python main.py --config=configs/NAME.py[:VARIANT] --workdir=DIR.

The experiment is chosen by `config.experiment` (see experiments/__init__.py); any config field
can be overridden, e.g. --config.sampler.interpolant=vp --config.sampler.sde=true.
"""

import logging as std_logging
import os
import sys
import traceback

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
flags.DEFINE_multi_string(
    'import', [], 'A module of your own that declares a METHOD, REWARD, BACKBONE or '
    'INTERPOLANT (docs/extending.md): a dotted name on the Python path or a path to a .py '
    'file; repeat the flag for several. It is registered before the config is read, so its '
    'name works in --config variants and fields.')


def _quiet_library_logs(record) -> bool:
  """Keeps our INFO lines; drops orbax's and jax's own chatter below WARNING."""
  noisy = ('orbax' in record.pathname or 'jax/_src' in record.pathname
           or 'matplotlib' in record.pathname)
  return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}; every setting is a flag (--config.FIELD=VALUE).')
  logging.get_absl_logger().addFilter(_quiet_library_logs)
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
  config = _CONFIG.value
  try:
    if _DISTRIBUTED.value:
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    import experiments  # pylint: disable=g-import-not-at-top
    from samplers.ground import progress  # pylint: disable=g-import-not-at-top
    progress.enable(config.experiment != 'benchmark')   # the benchmark times bare programs
    run = experiments.get_experiment(config.experiment)
    metrics = run(config, _WORKDIR.value)
  except KeyboardInterrupt:
    _fail('interrupted; finished work is kept (a rerun resumes it).', code=130)
  except USER_ERRORS as e:
    # Configuration, input and environment errors: every builder validates before compiling.
    _fail(_one_line(e))
  except Exception as e:  # pylint: disable=broad-except
    # A bug: a one-line summary first, then the traceback for the report.
    print(f'error: internal error, please report it: {type(e).__name__}: {_one_line(e)}',
          file=sys.stderr)
    traceback.print_exc()
    sys.exit(1)
  if config.experiment in ('compare', 'benchmark', 'sweep') or not _is_process_zero():
    return  # they print their own tables; one process prints for a multi-host job
  for key, value in sorted(metrics.items()):
    print(f'{key:>20s}: {value:.6g}' if isinstance(value, float) else f'{key:>20s}: {value}')


# What a user (not a bug) causes: a bad config value, a missing or damaged file, a workdir that
# cannot be written, a number past what the device holds.
USER_ERRORS = (ValueError, OSError, OverflowError)


def _one_line(e: BaseException) -> str:
  text = str(e).strip() or type(e).__name__
  if isinstance(e, OSError) and e.filename and e.strerror:
    text = f'{e.filename}: {e.strerror}'
  return ' '.join(text.split())


def _fail(message: str, code: int = 2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _parse_flags(argv):
  """absl's flag parsing, with every parse error (an unknown --config. key, a missing config
  file, a bad value) as one `error:` line and exit code 2."""
  _register_imports(argv)
  try:
    parsed = flags.FLAGS(argv)
    getattr(_CONFIG.value, 'experiment', None)  # a config file that failed to load raises here
    return parsed
  except Exception as e:  # pylint: disable=broad-except
    _fail(_flag_error(e, argv))


def _register_imports(argv):
  """Registers the --import modules before absl reads the config file that may name them."""
  specs = [a.split('=', 1)[1] for a in argv[1:] if a.startswith('--import=')]
  if '--import' in argv[1:]:
    _fail('write --import=MODULE (with "="), as for every flag here.')
  if not specs:
    return
  from samplers.ground import registry  # pylint: disable=g-import-not-at-top
  for spec in specs:
    try:
      added = registry.register(spec)
    except (ValueError, ImportError) as e:
      _fail(_one_line(e))
    except Exception as e:  # pylint: disable=broad-except
      _fail(f'--import {spec} failed while importing: {type(e).__name__}: {_one_line(e)}')
    logging.info('--import %s: %s', spec, ', '.join(f'{what}={name}' for what, name in added))


def _flag_error(e: BaseException, argv) -> str:
  """One line for a flag-parse error: ml_collections reports an unknown field as a bare
  AttributeError or KeyError, and a config file's own error with its traceback inside."""
  text = str(e).strip()
  if isinstance(e, (AttributeError, KeyError)):
    field = text.strip('"\' ')
    args = [a for a in argv if a.startswith('--config.') and field in a]
    where = args[0].split('=')[0] if args else f'--config...{field}'
    return f'unknown config field {where}: the config has no field {field!r}.'
  if 'No such file or directory' in text or 'Failed loading config file' in text:
    path = _missing_config_file(argv)
    return f'config file {path} does not exist.' if path else _one_line(e)
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if len(lines) > 1 and 'Traceback' in text:  # keep the flag and the config's own last line
    return f'{lines[0].rstrip(":")} {lines[-1]}'
  return _one_line(e)


def _missing_config_file(argv):
  for a in argv:
    if a.startswith('--config=') and not os.path.isfile(a.split('=', 1)[1].split(':')[0]):
      return a.split('=', 1)[1].split(':')[0]
  return None


def _is_process_zero() -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)

"""Finding pretrained weights: a local folder, or a Hugging Face hub id fetched into the cache."""

import contextlib
import os


def resolve(name_or_path: str, revision: str = '', what: str = 'model',
            allow_patterns=None) -> str:
  """A local folder holding `name_or_path`: the folder itself, or a hub snapshot of the id.

  Hub downloads need network access; offline, the id must already be in the local hub cache.
  allow_patterns limits a download to the files needed (e.g. Flax weights, not PyTorch ones).
  """
  if not name_or_path:
    raise ValueError(f'the {what} path is empty: give a local folder or a hub id.')
  if os.path.isdir(name_or_path):
    return name_or_path
  if os.path.exists(name_or_path):
    raise ValueError(f'{what} {name_or_path!r} is a file, not a folder.')
  looks_like_id = name_or_path.count('/') == 1 and not name_or_path.startswith(('.', '/', '~'))
  if not looks_like_id:
    raise FileNotFoundError(f'{what} folder {name_or_path!r} does not exist.')
  import huggingface_hub  # pylint: disable=g-import-not-at-top
  try:
    return huggingface_hub.snapshot_download(name_or_path, revision=revision or None,
                                               allow_patterns=allow_patterns)
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f'{what} {name_or_path!r} is neither a local folder nor a hub id that could be '
        f'fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}).') from None


def _drop_flax_deprecation(record) -> bool:
  return 'classes are deprecated and will be removed' not in record.getMessage()


def silence_flax_deprecation() -> None:
  """Drops the "Flax classes are deprecated" log lines of diffusers 0.39 and transformers 4.57
  (both pinned on purpose: they are the last releases with Flax models)."""
  import logging  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top,unused-import
  import transformers  # pylint: disable=g-import-not-at-top,unused-import
  for library in ('diffusers', 'transformers'):
    for handler in logging.getLogger(library).handlers:
      if _drop_flax_deprecation not in handler.filters:
        handler.addFilter(_drop_flax_deprecation)


@contextlib.contextmanager
def reading(what: str, path: str):
  """Turns whatever a weight loader raises on a damaged or foreign file (safetensors' and
  msgpack's own errors, KeyError, OSError, ...) into one ValueError naming the file."""
  try:
    yield
  except (ValueError, FileNotFoundError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
    raise ValueError(f'cannot read the {what} at {path!r} ({type(e).__name__}: {first}).') from None

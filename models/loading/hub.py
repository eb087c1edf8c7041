"""Finding pretrained weights: a local folder, or a Hugging Face hub id fetched into the cache."""

import contextlib
import json
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
    if _gated(e):
      raise PermissionError(
          f'{what} {name_or_path!r} is gated on the hub: accept its licence on its page '
          f'(https://huggingface.co/{name_or_path}) with your account, then log in on this '
          'machine (hf auth login, or set HF_TOKEN to an access token); docs/real_models.md.'
      ) from None
    raise FileNotFoundError(
        f'{what} {name_or_path!r} is neither a local folder nor a hub id that could be '
        f'fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}).') from None


def _gated(e: Exception) -> bool:
  """A hub refusal for want of an accepted licence or a login (GatedRepoError, HTTP 401/403)."""
  names = {c.__name__ for c in type(e).__mro__}
  text = str(e).lower()
  return 'GatedRepoError' in names or 'gated' in text or ' 401 ' in f' {text} ' or (
      '403' in text and 'forbidden' in text)


def read_json(path: str, what: str) -> dict:
  """A JSON file (a model's config.json, ...) as a dict, or one line naming the missing,
  unreadable or non-object file."""
  if not os.path.isfile(path):
    raise ValueError(f'the {what} has no {os.path.basename(path)} at {path!r}.')
  with reading(f'{what} config', path):
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  if not isinstance(value, dict):
    raise ValueError(f'{path} holds no JSON object: not the {what}\'s config.')
  return value


@contextlib.contextmanager
def reading(what: str, path: str):
  """Turns whatever a weight loader raises on a damaged or foreign file (safetensors' and
  tokenizers' own errors, KeyError, OSError, ...) into one ValueError naming the file."""
  try:
    yield
  except (ValueError, FileNotFoundError):
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
    raise ValueError(f'cannot read the {what} at {path!r} ({type(e).__name__}: {first}).') from None

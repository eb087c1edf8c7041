"""The FLUX.1 diffusers folder: its components, their configs and the model's dtypes."""

import os

from models import diffusers_folder
from models.loading import hub

COMPONENTS = ('transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2',
              'scheduler')
DTYPE_NAMES = ('float32', 'bfloat16')
_HUB_FILES = ['model_index.json', '*/*.json', '*/*.txt', '*/*.safetensors', '*/*.model']


def resolve(cfg) -> str:
  """The local diffusers folder of model.path (a hub id is downloaded), layout checked."""
  return diffusers_folder.resolve(cfg, 'FLUX', COMPONENTS, _HUB_FILES)


def component_config(path: str, component: str, what: str, name: str = 'config.json') -> dict:
  """A component's JSON config (transformer/config.json, scheduler/scheduler_config.json...)."""
  return hub.read_json(os.path.join(path, component, name), f'FLUX {what}')


def dtype_name(cfg) -> str:
  """model.dtype (bfloat16 by default)."""
  return diffusers_folder.dtype_name(cfg, 'bfloat16', DTYPE_NAMES)


def dtype(name: str):
  return diffusers_folder.DTYPES[name]

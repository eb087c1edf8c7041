"""CLIP, the project's Flax port (network.py), read from transformers' PyTorch folders
(config.json and model.safetensors, sharded or not) or, through open_clip.py, from OpenCLIP's
key layout. SD's and FLUX's text encoders, the CLIP score, PickScore and HPSv2 all use it."""

import os

import jax
import jax.numpy as jnp

from models.clip import config as config_lib
from models.clip import network
from models.loading import hub
from models.loading import torch_weights

# Buffers some exports save beside the weights (transformers before 4.31 saved position_ids).
BUFFERS = ('position_ids',)


def read_config(folder: str, what: str) -> config_lib.ClipConfig:
  return config_lib.from_dict(hub.read_json(os.path.join(folder, 'config.json'), what), what)


def from_tensors(config: config_lib.ClipConfig, tensors: dict, what: str, dtype=jnp.float32):
  """The params of `config`'s network from a PyTorch state dict {key: array}, strictly."""
  params = torch_weights.assign(network.shapes(config, dtype), tensors, what, dtype,
                                ignore=BUFFERS)
  return jax.tree.map(jnp.asarray, params)


def load(folder: str, what: str = 'CLIP model', dtype_name: str = 'float32'):
  """(Clip module, params) of a transformers CLIP folder, computing in dtype."""
  dtype = jnp.dtype(dtype_name)
  config = read_config(folder, what)
  params = from_tensors(config, torch_weights.read_tensors(folder, what), what, dtype)
  return network.Clip(config, dtype=dtype, param_dtype=dtype), params

"""PyTorch checkpoints (safetensors, one file or sharded) onto Flax parameter trees, without
torch, strictly: every checkpoint tensor goes to exactly one parameter.

A PyTorch key becomes a Flax path by splitting on `.` and gluing list indices to their module
(`blocks.3.attn.to_q.weight` -> blocks_3/attn/to_q/weight), then `weight` becomes `kernel`
(Dense: transposed; Conv: OIHW -> HWIO) or `scale` (norms), whichever the tree has. A module may
give extra renames (diffusers' Flax VAE calls `to_q` `query`, ...). An unused key, a parameter
left without a tensor, or a shape that does not match is a one-line ValueError naming it.
"""

import json
import os

import numpy as np

from models.loading import hub
from samplers.ground import checks

INDEX_SUFFIX = '.safetensors.index.json'


def weight_files(folder: str, what: str) -> list:
  """The safetensors files of a component folder: the shards its *.safetensors.index.json
  lists, else its single *.safetensors file."""
  if not os.path.isdir(folder):
    raise ValueError(f'the {what} folder {folder!r} does not exist.')
  names = sorted(os.listdir(folder))
  index = [n for n in names if n.endswith(INDEX_SUFFIX)]
  if index:
    with hub.reading(f'{what} shard index', os.path.join(folder, index[0])):
      with open(os.path.join(folder, index[0])) as f:
        weight_map = json.load(f).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
      raise ValueError(f'{os.path.join(folder, index[0])} has no "weight_map" of tensor names '
                       'to shard files.')
    shards = sorted(set(map(str, weight_map.values())))
    for shard in shards:   # a file name in this folder, nothing the index could point past it
      if (os.path.basename(shard) != shard or shard in ('', '.', '..')
          or not shard.endswith('.safetensors')):
        raise ValueError(f'{os.path.join(folder, index[0])} names shard {shard!r}, which is not '
                         'a .safetensors file name in its folder.')
    missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
    if missing:
      raise ValueError(f'the {what} at {folder!r} lacks shard {missing[0]} named by '
                       f'{index[0]}.')
    return [os.path.join(folder, s) for s in shards]
  single = [n for n in names if n.endswith('.safetensors')]
  if len(single) != 1:
    raise ValueError(f'the {what} folder {folder!r} has {len(single)} .safetensors files and '
                     f'no {INDEX_SUFFIX}: expected one file or an index of shards.')
  return [os.path.join(folder, single[0])]


def read_tensors(folder: str, what: str) -> dict:
  """{key: numpy array} of every tensor in a component folder (bfloat16 stays bfloat16)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  tensors = {}
  for path in weight_files(folder, what):
    with hub.reading(what, path):
      part = load_file(path)
    for key in part:
      if key in tensors:
        raise ValueError(f'the {what} at {folder!r} holds tensor {key!r} in two shards.')
    bad = checks.first_non_finite(part, flat=True)
    if bad:
      raise ValueError(f'the {what} tensor {bad!r} in {path} holds NaN or inf: the file is '
                       'damaged or was saved from a diverged model.')
    tensors.update(part)
  return tensors


def flax_path(key: str, renames=None) -> tuple:
  """A PyTorch key's Flax path, its last element still `weight` or `bias`."""
  parts = []
  for part in key.split('.'):
    if part.isdigit() and parts:
      parts[-1] = f'{parts[-1]}_{part}'
    else:
      parts.append(part)
  renames = renames or {}
  return tuple(renames.get(p, p) for p in parts)


def _flatten(tree, prefix=()):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def _unflatten(flat):
  tree = {}
  for path, value in flat.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def _to_flax(name: str, tensor: np.ndarray) -> np.ndarray:
  if name == 'kernel' and tensor.ndim == 2:
    return tensor.T
  if name == 'kernel' and tensor.ndim == 4:
    return np.transpose(tensor, (2, 3, 1, 0))
  return tensor


def assign(shapes, tensors: dict, what: str, dtype, renames=None, skip=()) -> dict:
  """The parameter tree with the structure of `shapes` (nested dicts of arrays or
  ShapeDtypeStructs) filled from `tensors` {PyTorch key: array}, cast to `dtype`.

  Parameter paths in `skip` are not expected in the checkpoint (the caller fills them)."""
  targets = _flatten(shapes)
  filled = {}
  for key in sorted(tensors):
    path = flax_path(key, renames)
    if path[-1] == 'weight':
      kernel, scale = path[:-1] + ('kernel',), path[:-1] + ('scale',)
      path = kernel if kernel in targets else scale
    if path not in targets:
      raise ValueError(f'the {what} checkpoint has tensor {key!r}, which no parameter takes '
                       f'(no {"/".join(path)} in the model).')
    value = _to_flax(path[-1], np.asarray(tensors[key]))
    want = tuple(targets[path].shape)
    if value.shape != want:
      raise ValueError(f'the {what} checkpoint tensor {key!r} has shape '
                       f'{tuple(tensors[key].shape)}; the model\'s {"/".join(path)} needs '
                       f'{want}{" (transposed)" if path[-1] == "kernel" else ""}.')
    filled[path] = value.astype(dtype, copy=False)
  missing = [p for p in targets if p not in filled and p not in skip]
  if missing:
    raise ValueError(f'the {what} checkpoint has no tensor for parameter '
                     f'{"/".join(missing[0])}' + (f' (and {len(missing) - 1} more)'
                                                  if len(missing) > 1 else '') + '.')
  return _unflatten(filled)


def flax_transformers_model(directory: str, cls_name: str, what: str, dtype):
  """(model, params) of a transformers Flax class `cls_name` (FlaxCLIPModel, ...) whose weights
  are the folder's PyTorch safetensors. No random weights are initialised."""
  hub.silence_flax_deprecation()
  import transformers  # pylint: disable=g-import-not-at-top
  cls = getattr(transformers, cls_name)
  with hub.reading(what, directory):
    config = cls.config_class.from_pretrained(directory)
  model = cls(config, _do_init=False, dtype=dtype)
  return model, transformers_flax_params(model, read_tensors(directory, what), what, directory,
                                         dtype)


def transformers_flax_params(model, tensors: dict, what: str, where: str, dtype):
  """The params of an uninitialised transformers Flax `model` from a PyTorch state dict
  {key: numpy array}, by transformers' own converter; every parameter must be filled, at its
  shape (a one-line ValueError naming the first that is not)."""
  import types  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  with hub.reading(what, where):
    # The converter reads only the model's parameter shapes and prefix: give it those, so that
    # no random weights are ever initialised (T5-XXL's would be 9 GB).
    shapes = types.SimpleNamespace(params=model.params_shape_tree,
                                   base_model_prefix=model.base_model_prefix)
    params = convert_pytorch_state_dict_to_flax(dict(tensors), shapes)
  want = traverse_util.flatten_dict(model.params_shape_tree)
  got = traverse_util.flatten_dict(params)
  missing = [k for k in want if k not in got]
  if missing:
    raise ValueError(f'the {what} checkpoint at {where!r} has no tensor for '
                     f'{"/".join(missing[0])}.')
  bad = [k for k in want if tuple(got[k].shape) != tuple(want[k].shape)]
  if bad:
    raise ValueError(f'the {what} tensor for {"/".join(bad[0])} has shape '
                     f'{tuple(got[bad[0]].shape)}, the model needs {tuple(want[bad[0]].shape)}.')
  return traverse_util.unflatten_dict({k: jnp.asarray(got[k], dtype) for k in want})

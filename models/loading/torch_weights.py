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


def _variant(name: str, suffix: str) -> str:
  """The variant of a weight file name: 'fp16' for model.fp16.safetensors, '' for
  model.safetensors."""
  base = name[:-len(suffix)]
  return base.split('.', 1)[1] if '.' in base else ''


def hub_patterns(variant: str = '') -> list:
  """Hub download patterns for the safetensors of one variant ('' the default files), so that
  a repository's other variants are not fetched."""
  if variant:
    return [f'*/*.{variant}.safetensors', f'*/*.{variant}-*-of-*.safetensors',
            f'*/*.{variant}.safetensors.index.json']
  return ['*/model.safetensors', '*/diffusion_pytorch_model.safetensors',
          '*/*-of-*.safetensors', '*/*.safetensors.index.json']


def weight_files(folder: str, what: str, variant: str = '') -> list:
  """The safetensors files of a component folder for a variant ('' the default files, 'fp16'
  the *.fp16.safetensors ones): the shards its *.safetensors.index.json lists, else its single
  *.safetensors file."""
  if not os.path.isdir(folder):
    raise ValueError(f'the {what} folder {folder!r} does not exist.')
  names = sorted(os.listdir(folder))
  index = [n for n in names if n.endswith(INDEX_SUFFIX) and _variant(n, INDEX_SUFFIX) == variant]
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
  single = [n for n in names if n.endswith('.safetensors')
            and _variant(n, '.safetensors') == variant]
  if not single and not variant:
    flax = [n for n in names if n.endswith('.msgpack')]
    pickles = [n for n in names if n.endswith(('.bin', '.pt', '.pth', '.ckpt'))]
    if flax or pickles:
      raise ValueError(
          f'the {what} folder {folder!r} holds ' +
          (f'Flax weights ({flax[0]}), which the project no longer reads' if flax else
           f'only PyTorch pickles ({pickles[0]}), which the project does not unpickle') +
          ': it reads the PyTorch safetensors that the hub\'s diffusers and transformers folders '
          'publish (safetensors.torch.save_file converts a state dict).')
  if len(single) != 1:
    others = sorted({_variant(n, '.safetensors') for n in names if n.endswith('.safetensors')}
                    - {variant})
    hint = (f' (it has variant{"s" if len(others) > 1 else ""} '
            f'{", ".join(repr(o) for o in others if o) or "none"}: set model.variant)'
            if not single and any(others) else '')
    raise ValueError(f'the {what} folder {folder!r} has {len(single)} '
                     f'{variant + " " if variant else ""}.safetensors files and no '
                     f'{INDEX_SUFFIX}: expected one file or an index of shards{hint}.')
  return [os.path.join(folder, single[0])]


def read_tensors(folder: str, what: str, variant: str = '') -> dict:
  """{key: numpy array} of every tensor in a component folder (bfloat16 stays bfloat16)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  tensors = {}
  for path in weight_files(folder, what, variant):
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


def assign(shapes, tensors: dict, what: str, dtype, renames=None, skip=(), ignore=()) -> dict:
  """The parameter tree with the structure of `shapes` (nested dicts of arrays or
  ShapeDtypeStructs) filled from `tensors` {PyTorch key: array}, cast to `dtype`.

  Parameter paths in `skip` are not expected in the checkpoint (the caller fills them); keys
  ending in one of `ignore` are buffers some exports save (CLIP's position_ids), not weights."""
  targets = _flatten(shapes)
  filled = {}
  for key in sorted(tensors):
    if any(key == i or key.endswith('.' + i) for i in ignore):
      continue
    path = flax_path(key, renames)
    if path[-1] == 'weight' and path not in targets:
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


def load(folder: str, what: str, shapes, dtype, variant: str = ''):
  """The parameter tree of `shapes` filled strictly from a component folder's safetensors
  (one file or shards), cast to dtype, as jax arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = assign(shapes, read_tensors(folder, what, variant), what, dtype)
  return jax.tree.map(jnp.asarray, params)

"""The device mesh of a run (config.mesh) and where each input goes on it.

config.mesh.axes names the axes and config.mesh.shape their sizes (-1: all remaining devices).
The `particles` axis splits every method's particles or chains (samplers/ground/sharding.py); a
`model` axis, when present, splits large backbone parameters FSDP-style (`fsdp_specs`); a
`searches` axis, when present, splits a batch of independent searches (prompts, classes x
runs: search/__init__.py: run_batched).
Everything else is replicated: the PRNG key, the conditions, the reward's parameters, and the
backbone's parameters when there is no `model` axis.

The mesh's axis types are Auto: the search code pins particle layouts at a few points with
sharding constraints and XLA propagates them; the rest of the program is written as for one
device. Under jax.distributed (one process per host) the mesh spans every process's devices,
inputs are identical on every process (same config, same seed), and only process 0 writes.
"""

import math

import flax.linen as nn
import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from samplers.ground import sharding

AXES = (sharding.PARTICLES, 'model', sharding.SEARCHES)
# Logical axis rules for FSDP: a parameter's largest dimension that the `model` axis divides
# gets the logical name `fsdp`, which maps to the mesh's `model` axis.
FSDP_RULES = (('fsdp', 'model'),)


def make_mesh(cfg) -> jax.sharding.Mesh:
  """The mesh of config.mesh (axes, shape with at most one -1), checked against the devices."""
  axes, shape = tuple(cfg.axes), tuple(int(s) for s in cfg.shape)
  devices = jax.device_count()
  if len(axes) != len(shape):
    raise ValueError(f'mesh.axes {axes} and mesh.shape {shape} differ in length.')
  unknown = [a for a in axes if a not in AXES]
  if unknown or len(set(axes)) != len(axes) or sharding.PARTICLES not in axes:
    raise ValueError(f'mesh.axes {axes} must name distinct axes among {AXES}, including '
                     f'{sharding.PARTICLES!r}.')
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f'mesh.shape {shape}: sizes must be positive, with at most one -1.')
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if devices % known:
      raise ValueError(f'mesh.shape {shape} cannot fill {devices} devices: {devices} is not a '
                       f'multiple of {known}.')
    shape = tuple(devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != devices:
    raise ValueError(f'mesh.shape {shape} needs {math.prod(shape)} devices, but this run has '
                     f'{devices} (jax.device_count()); use -1 for "all the rest".')
  return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes))


def check_particles(method: str, method_config, mesh) -> None:
  """A method's particles or chains must divide evenly over the particle axis; which count
  that is, the method declares (search/base.py: Method.particle_field)."""
  import search  # pylint: disable=g-import-not-at-top
  spec = search.get_method(method)
  size = mesh.shape[sharding.PARTICLES]
  if spec.particle_field is None:  # replicated on every device
    return
  rows = getattr(method_config, spec.particle_field)
  if rows is None:  # this configuration runs replicated (dts with one rollout in flight)
    return
  if rows % size:
    what = spec.particle_field.replace('num_', '')
    source = spec.particle_source
    raise ValueError(
        f'{method} runs {rows} {what} ({source}), which do not divide over the {size} '
        f'devices of the mesh\'s particle axis; change {source.split(" ")[0]} or mesh.shape.')


def check_searches(batch: int, mesh) -> None:
  """The independent searches of a batched run must divide over the `searches` axis."""
  size = dict(mesh.shape).get(sharding.SEARCHES, 1)
  if size > 1 and (batch == 0 or batch % size):
    raise ValueError(
        f'the mesh\'s searches axis has {size} devices, but this run has {batch or "one"} '
        f'independent search{"es" if batch != 1 else ""} (prompts, or classes x search.num_runs), '
        f'which do not divide over it; change the number of prompts or mesh.shape.')


def fsdp_specs(params, model_size: int):
  """PartitionSpecs that split each parameter of >= 2 dims along its largest dimension that
  model_size divides (logical name `fsdp`, resolved through FSDP_RULES); others replicated."""
  def logical(leaf):
    shape = np.shape(leaf)
    if len(shape) < 2 or model_size <= 1:
      return P()
    candidates = [i for i in np.argsort(shape)[::-1] if shape[i] % model_size == 0]
    if not candidates:
      return P()
    names = [None] * len(shape)
    names[candidates[0]] = 'fsdp'
    return P(*names)
  logical_specs = jax.tree.map(logical, params)
  return nn.logical_to_mesh(logical_specs, FSDP_RULES)


def place(tree, mesh, specs=None):
  """Puts a pytree on the mesh: replicated, or by a matching tree of PartitionSpecs.

  With several processes each one builds its own shards from its (identical) host copy."""
  if specs is None:
    specs = jax.tree.map(lambda _: P(), tree)
  shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                           is_leaf=lambda s: isinstance(s, P))
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)
  return jax.tree.map(_global_array, tree, shardings)


def _global_array(leaf, sharding_):
  """A global array from a host value that every process holds identically."""
  if jax.dtypes.issubdtype(getattr(leaf, 'dtype', None), jax.dtypes.prng_key):
    data = _global_array(jax.random.key_data(leaf), sharding_)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
  host = np.asarray(leaf)
  return jax.make_array_from_callback(host.shape, sharding_, lambda index: host[index])


def place_sampler(sampler, mesh):
  """The sampler on the mesh: the backbone's params split FSDP-style over a `model` axis when
  the mesh has one of size > 1, everything else replicated."""
  model_size = dict(zip(mesh.axis_names, mesh.devices.shape)).get('model', 1)
  if model_size <= 1:
    return place(sampler, mesh)
  backbone = sampler.backbone
  params = place(backbone.params, mesh, fsdp_specs(backbone.params, model_size))
  rest = place(sampler.replace(backbone=backbone.replace(params=None)), mesh)
  return rest.replace(backbone=rest.backbone.replace(params=params))


def to_host(tree):
  """numpy copies of (possibly multi-process) arrays: gathered across processes when needed."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))

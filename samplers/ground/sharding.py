"""Sharding constraints on the particle axis, for code that runs under a device mesh.

Particle arrays ([N, ...]: states, Tweedie estimates, rewards, weights) are split along the
mesh axis named `particles`; everything else (parameters, the time grid, DTS's tree) is
replicated. Inside `jax.set_mesh(mesh)` these helpers add `with_sharding_constraint`s that pin
the layout at the points where particles are created or carried through a loop; with no mesh
set, or a mesh without a `particles` axis, they do nothing, so the same code runs on one device.
The mesh's axis types are Auto (see experiments/mesh.py): XLA propagates the layout between
the pinned points.
"""

import jax
from jax.sharding import PartitionSpec as P

PARTICLES = 'particles'
# Independent searches (prompts, classes x runs) run batched: a `searches` mesh axis splits them
# (search/__init__.py: run_batched), each device group running its own searches' particles.
SEARCHES = 'searches'


def _mesh_axes() -> tuple:
  """The current mesh's Auto axes (inside jax.shard_map the mapped axes are Manual: a
  function running on one device's block needs no constraint on them)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return ()
  return tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types)
               if kind == jax.sharding.AxisType.Auto)


def rows(tree):
  """Splits every array's leading (particle) axis over the `particles` mesh axis."""
  if PARTICLES not in _mesh_axes():
    return tree
  return jax.tree.map(
      lambda a: jax.lax.with_sharding_constraint(a, P(PARTICLES)) if a.ndim else a, tree)


def replicated(tree):
  """Makes every array whole on every device (for example log-weights before resampling: each
  device then computes the same ancestors from the same all-gathered values)."""
  if not _mesh_axes():
    return tree
  return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, P()), tree)


def particle_axis_size() -> int:
  """Devices along the particle axis of the current mesh (1 without one, or inside a
  shard_map over it)."""
  mesh = jax.sharding.get_abstract_mesh()
  if PARTICLES not in _mesh_axes():
    return 1
  return int(mesh.shape[PARTICLES])


def searches_axis_size() -> int:
  """Devices along the `searches` axis of the current mesh (1 without one)."""
  mesh = jax.sharding.get_abstract_mesh()
  if SEARCHES not in _mesh_axes():
    return 1
  return int(mesh.shape[SEARCHES])

"""Orbax checkpoints of a training run: `params` and `opt_state` saved as separate items, so a
sampler can restore the parameters alone and a resumed training run restores both."""

import os

import jax
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A manager over DIR (created if missing); keeps the newest `max_to_keep` steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=('params', 'opt_state'))


def save(mngr: ocp.CheckpointManager, step: int, params, opt_state) -> None:
  mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                          opt_state=ocp.args.StandardSave(opt_state)))
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, step: int, params_like, opt_state_like=None):
  """Restores (params, opt_state) at `step` into the structures of the given templates."""
  abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  items = {'params': ocp.args.StandardRestore(abstract(params_like))}
  if opt_state_like is not None:
    items['opt_state'] = ocp.args.StandardRestore(abstract(opt_state_like))
  restored = mngr.restore(step, args=ocp.args.Composite(**items))
  return restored['params'], restored.get('opt_state') if opt_state_like is not None else None


def restore_latest_params(directory: str, params_like):
  """The newest saved parameters under DIR; a clear error if there are none."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'checkpoint directory {directory!r} does not exist.')
  mngr = manager(directory)
  step = mngr.latest_step()
  if step is None:
    raise FileNotFoundError(f'no checkpoint found in {directory!r}.')
  return restore(mngr, step, params_like)[0], step

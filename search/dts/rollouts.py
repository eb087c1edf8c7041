"""DTS's rollouts: B slots in flight, one backbone call per step on their rows, each at its own
level; a slot is refilled by a new selection when its rollout is backed up (continuous) or
when all have finished (synchronous). `run` is the search program."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from samplers.ground import progress
from samplers.ground import sharding
from search import base
from search.dts.config import Config
from search.dts.selection import select
from search.dts.tree import Tree
from search.dts.tree import backup
from search.dts.tree import draw_weights
from search.dts.tree import link_chain
from search.dts.tree import refresh_root_chunk
from search.dts.tree import refresh_root_chunks

class Slots(NamedTuple):
  """The B rollouts in flight. x [B, *data_shape] is a slot's state at `level`, not yet
  evaluated; a rollout expanding node `origin` (at depth `origin_depth`) owns the node ids
  first_id, first_id + 1, ... for depths origin_depth + 1, ..., D + 1; `key` draws its noise."""
  x: jax.Array
  level: jax.Array
  active: jax.Array
  origin: jax.Array
  origin_depth: jax.Array
  first_id: jax.Array
  key: jax.Array


class Loop(NamedTuple):
  """The state of the tree-search while-loop (one backbone call per step)."""
  tree: Tree
  slots: Slots
  nfe: jax.Array          # rows counted: the NFEs of the rollouts so far
  nfe_evaluated: jax.Array  # rows the backbone evaluated (B per step)
  reserved: jax.Array     # NFEs of the rollouts started (>= nfe; == nfe at the end)
  selections: jax.Array   # selections made (each one draws its keys by this count)
  rollouts: jax.Array     # rollouts backed up
  best: jax.Array         # the best reward scored so far
  num_invalid: jax.Array
  trace_nfe: jax.Array    # [max_rollouts + 1]: nfe at each backup
  trace_best: jax.Array
  halted: jax.Array       # a selection did not fit the budget, or the selection guard was hit


def run(key, sampler, reward, config: Config, cond=None) -> base.SearchResult:
  m, cap, terminal, nb = sampler.num_steps, config.capacity, config.depth + 1, config.batch
  if m != config.num_steps:
    raise ValueError(f'the DTS config was built for {config.num_steps} steps, the sampler '
                     f'has {m}.')
  lam = config.common.temperature
  levels_np = np.asarray(config.branch_levels)
  # Node level by depth: depth 0 (root) -> -1, 1..D -> branch levels, D + 1 -> M - 1.
  level_of_depth = jnp.asarray(np.concatenate([[-1], levels_np, [m - 1]]), jnp.int32)
  depth_np = np.full(m, -1)
  depth_np[levels_np] = np.arange(1, len(levels_np) + 1)
  depth_np[m - 1] = terminal
  depth_of_level = jnp.asarray(depth_np, jnp.int32)  # -1 where the level is not a node level
  cost_of_depth = jnp.asarray([config.rollout_cost(d) for d in range(terminal)], jnp.int32)
  shape = tuple(sampler.data_shape)
  split = nb % sharding.particle_axis_size() == 0
  rows = sharding.rows if split else (lambda a: a)
  tree_key, draw_key = jax.random.split(key)
  sigma0 = sampler.init_scale()
  level_scale = sampler.noise_scale(jnp.arange(m))  # [M]: g sqrt(dt) of the step leaving k
  per_row = lambda mask, a: mask.reshape(mask.shape + (1,) * (a.ndim - 1))

  def refill(s: Loop, b, fresh: dict):
    """Selects for slot b until a selection expands a node (terminal ones only add visits),
    or halts. Writes the slot's new rollout into `fresh` (replicated [B] buffers)."""
    def cond(c):
      s, _, started = c
      return ~started & ~s.halted

    def body(c):
      s, fresh, _ = c
      tree = s.tree
      k = jax.random.fold_in(tree_key, s.selections)
      node, path = select(tree, k, config)
      depth = tree.depth[node]
      at_terminal = depth == terminal
      cost = cost_of_depth[jnp.minimum(depth, terminal - 1)]
      new_nodes = terminal - depth
      guard = s.selections >= config.max_selections
      fits = (s.reserved + cost <= config.common.budget) & (tree.size + new_nodes <= cap)
      counts = ~guard & (at_terminal | fits)  # visits are added for a revisit or an expansion
      tree = tree.replace(visits=tree.visits.at[path].add(counts.astype(jnp.int32)))
      tree = refresh_root_chunk(tree, path[1], config)  # path[1]: the depth-1 node, if any
      expand = ~guard & ~at_terminal & fits
      tree = tree.replace(pending=tree.pending.at[node].add(expand.astype(jnp.int32)),
                          size=tree.size + jnp.where(expand, new_nodes, 0))
      k_init, k_roll = jax.random.split(k)
      noise = jax.random.normal(jax.random.fold_in(k_roll, level_of_depth[depth] + 1), shape)
      start = jnp.where(node == 0, sigma0 * jax.random.normal(k_init, (1,) + shape)[0],
                        tree.data[node] + level_scale[jnp.maximum(level_of_depth[depth], 0)]
                        * noise)
      entry = dict(x=start, level=jnp.where(node == 0, 0, level_of_depth[depth] + 1),
                   active=expand, origin=node, origin_depth=depth, first_id=s.tree.size,
                   key=jax.random.key_data(k_roll))
      fresh = {name: fresh[name].at[b].set(jnp.where(expand, v, fresh[name][b]))
               for name, v in entry.items()}
      s = s._replace(tree=tree, selections=s.selections + 1,
                     reserved=s.reserved + jnp.where(expand, cost, 0),
                     halted=s.halted | guard | (~at_terminal & ~fits))
      return s, fresh, expand
    s, fresh, _ = jax.lax.while_loop(cond, body, (s, fresh, jnp.bool_(False)))
    return s, fresh

  def commit(s: Loop, b, r, slots):
    """Links slot b's finished rollout into the tree, sets its leaf's reward and backs up."""
    tree = s.tree
    origin, d0, first = slots.origin[b], slots.origin_depth[b], slots.first_id[b]
    tree = link_chain(tree, origin, d0, first, config)
    tree = tree.replace(pending=tree.pending.at[origin].add(-1))
    tree = backup(tree, origin, d0, first, r, config)
    if config.selection == 'uct':  # every 64 rollouts: tighten the chunks' score bounds
      stats = jax.lax.cond(s.rollouts % 64 == 63,
                           lambda: refresh_root_chunks(tree, config).root_stats,
                           lambda: tree.root_stats)
      tree = tree.replace(root_stats=stats)
    nfe_index = s.rollouts
    best = jnp.maximum(s.best, r)
    return s._replace(tree=tree, rollouts=s.rollouts + 1, best=best,
                      trace_nfe=s.trace_nfe.at[nfe_index].set(s.nfe),
                      trace_best=s.trace_best.at[nfe_index].set(best))

  def refill_all(s: Loop, wanted):
    """Refills the slots in `wanted` [B] in slot order (selections see the earlier ones)."""
    slots = s.slots
    wanted = wanted & ~s.halted
    fresh = dict(x=jnp.zeros_like(slots.x), level=slots.level, active=slots.active & ~wanted,
                 origin=slots.origin, origin_depth=slots.origin_depth,
                 first_id=slots.first_id, key=slots.key)
    order = jnp.nonzero(wanted, size=nb, fill_value=0)[0]

    def body(i, c):
      return refill(c[0], order[i], c[1])
    s, fresh = jax.lax.fori_loop(0, jnp.sum(wanted), body, (s, fresh))
    x = jnp.where(per_row(wanted, slots.x), rows(fresh.pop('x')), slots.x)
    # The slots' bookkeeping ([B] integers) stays whole on every device: the tree code reads it.
    return s._replace(slots=Slots(x=rows(x), **sharding.replicated(fresh)))

  def step(s: Loop) -> Loop:
    slots, tree = s.slots, s.tree
    level = jnp.where(slots.active, slots.level, m - 1)
    d = sampler.denoise(slots.x, level, cond)
    mean, scale = sampler.step_parts(slots.x, d, level)
    last = level == m - 1
    node_depth = depth_of_level[level]
    at_node = slots.active & (node_depth >= 0)
    target = jnp.where(at_node, slots.first_id + node_depth - slots.origin_depth - 1, cap)
    row = sharding.replicated(jnp.where(per_row(last, mean), d.x0, mean))
    tree = tree.replace(data=tree.data.at[target].set(row))
    r, bad = base.score_rows(reward, d.x0, cond)
    r, bad = sharding.replicated((r, bad))
    done = slots.active & last
    keys = jax.vmap(lambda k, l: jax.random.fold_in(jax.random.wrap_key_data(k), l + 1))(
        slots.key, level)
    noise = rows(jax.vmap(lambda k: jax.random.normal(k, shape))(keys))
    moving = slots.active & ~last
    x = jnp.where(per_row(moving, mean), mean + scale * noise, slots.x)
    slots = slots._replace(x=rows(x), level=sharding.replicated(
        jnp.where(moving, slots.level + 1, slots.level)), active=slots.active & ~last)
    nfe = s.nfe + jnp.sum(s.slots.active)
    if progress.enabled():   # one report per percent of the budget, not per backbone call
      percent = max(config.common.budget // 100, 1)
      jax.lax.cond(nfe // percent > s.nfe // percent,
                   lambda: progress.tick(nfe, config.common.budget), lambda: None)
    s = s._replace(tree=tree, slots=slots, nfe=nfe, nfe_evaluated=s.nfe_evaluated + nb,
                   num_invalid=s.num_invalid + jnp.sum(jnp.where(done, bad, 0)))
    order = jnp.nonzero(done, size=nb, fill_value=0)[0]
    s = jax.lax.fori_loop(0, jnp.sum(done),
                          lambda i, s: commit(s, order[i], r[order[i]], slots), s)
    if config.batching == 'continuous':
      wanted = ~s.slots.active
    else:  # all together, once every slot has finished
      wanted = jnp.broadcast_to(~jnp.any(s.slots.active), (nb,))
    return refill_all(s, wanted)

  trace_len = config.max_rollouts + 1
  key_shape = jax.random.key_data(jax.random.key(0)).shape
  empty_slots = Slots(x=rows(jnp.zeros((nb,) + shape)), level=jnp.zeros(nb, jnp.int32),
                      active=jnp.zeros(nb, bool), origin=jnp.zeros(nb, jnp.int32),
                      origin_depth=jnp.zeros(nb, jnp.int32), first_id=jnp.zeros(nb, jnp.int32),
                      key=jnp.zeros((nb,) + key_shape, jnp.uint32))
  init = Loop(tree=Tree.empty(config, shape), slots=empty_slots, nfe=jnp.int32(0),
              nfe_evaluated=jnp.int32(0), reserved=jnp.int32(0), selections=jnp.int32(0),
              rollouts=jnp.int32(0), best=jnp.float32(-jnp.inf), num_invalid=jnp.int32(0),
              trace_nfe=jnp.zeros(trace_len, jnp.int32),
              trace_best=jnp.full(trace_len, -jnp.inf), halted=jnp.bool_(False))
  init = refill_all(init, jnp.ones(nb, bool))
  s = jax.lax.while_loop(lambda s: jnp.any(s.slots.active), step, init)
  tree = s.tree
  leaves, log_w = draw_weights(tree, config, lam)
  rewards = jnp.where(leaves, tree.value[:cap], -jnp.inf)
  last = jnp.maximum(s.rollouts - 1, 0)
  valid_trace = jnp.arange(trace_len) < s.rollouts
  trace_nfe = jnp.where(valid_trace, s.trace_nfe, s.trace_nfe[last])
  trace_best = jnp.where(valid_trace, s.trace_best, s.trace_best[last])
  return base.finalize(draw_key, config.common, candidates=tree.data[:cap], rewards=rewards,
                       log_weights=log_w, nfe=s.nfe, nfe_evaluated=s.nfe_evaluated,
                       trace_nfe=trace_nfe, trace_best=trace_best, num_invalid=s.num_invalid,
                       num_scored=s.rollouts, eligible=leaves)

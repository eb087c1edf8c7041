"""Diffusion tree sampling, DTS and DTS* (Jain et al. 2025): an indexed tree and batched rollouts.

Depths: the root (depth 0) is a dummy; depth i = 1..D holds states at branch level
branch_levels[i-1] (0, E, 2E, ... < M - 1); depth D + 1 holds terminal states at level M - 1,
whose Tweedie estimate is the sample x0 and whose value is r(x0). An edge is a run of base-SDE
steps between two branch levels; every state a rollout passes at a branch level becomes a node.

One iteration: (1) select from the root while the node is fully widened (children >=
C * visits^alpha) by softmax(v / lambda) (`softmax`, DTS), uniformly (`uniform`, the unbiased
build) or by v + c_uct sqrt(log N(parent) / N(child)) (`uct`, DTS*); (2) expand the node with a
new child from the base kernel and roll out to the terminal level, adding each branch-level
state as a node; (3) back up: every node on the path takes the log-mean-exp (temperature
lambda) of its children's values, and its visit count grows by one. New nodes count one visit;
the root starts at 1. A selection that reaches a terminal node spends no NFE and only adds
visits.

Batched rollouts (docs/methods.md, "DTS at scale"): `dts_batch` = B slots each carry one
rollout; every step is one backbone call on the B slots' rows, each at its own level.
`continuous` batching refills a slot by a new selection as soon as its rollout is backed up;
`synchronous` refills all B together once all have finished (the paper's batched version; rows
of finished slots are evaluated and not counted, see nfe_evaluated). Concurrent selections see
each other through virtual visits and pending children: a selection adds its visits along the
path at once, and a node being expanded counts its in-flight child in the widening test, so
the next selection widens elsewhere or picks another child instead of piling on. With B = 1
this is exactly the sequential algorithm.

The index: the root's children are one array; every other node keeps its children in a linked
list of blocks of BLOCK ids. Selection, widening and backup read only the children of the nodes
on the path: O(depth x children) per iteration, never a pass over the whole tree. What is
stored per node is only what later steps read: a branch node keeps the deterministic part of
the Euler step leaving it (its children start from it plus fresh noise), a terminal node keeps
its sample x0. Under a mesh the B rows split over the `particles` axis and the tree is
replicated; per step the B new rows' states cross devices, nothing else of size.

Samples cost no NFE: one categorical draw over the terminal nodes with logits
r(leaf) / lambda - sum over ancestors of log |children|, which equals descending from the root
by softmax(v / lambda). `best` returns the terminal node with the highest reward.
"""

import dataclasses
import math
from typing import NamedTuple

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from samplers.ground import sharding
from search import base

SELECTIONS = ('softmax', 'uniform', 'uct')
BATCHINGS = ('continuous', 'synchronous')
BLOCK = 8          # child ids per block of a non-root node's child list
ROOT_CHUNK = 512   # the root's children are read in chunks of this many
_LOW = -1e30       # stands for an invalid (-inf) value in selection

_KNOBS = dict(
    tree_selection=base.Derived(str),  # softmax | uniform | uct (unset: dts softmax, dts_star uct)
    branch_every=base.Derived(int),    # branch every E levels (unset: M // 5)
    widen_c=2.0,            # progressive widening: children >= C * visits^alpha
    widen_alpha=0.8,
    c_uct=1.0,
    dts_batch=1,            # B rollouts in flight per backbone call (1: sequential)
    dts_batching='continuous',  # continuous | synchronous
)
# DTS samples the tilted target; DTS* (UCT selection) searches for the best sample. The B
# rollout rows split over the mesh (B = 1 runs replicated).
METHODS = (
    base.Method(name='dts', knobs=_KNOBS, particle_field='num_slots',
                particle_source='search.dts_batch', order=6),
    base.Method(name='dts_star', knobs=_KNOBS, particle_field='num_slots',
                particle_source='search.dts_batch', output='best', order=7),
)
_DEFAULT_SELECTION = {'dts': 'softmax', 'dts_star': 'uct'}


@dataclasses.dataclass(frozen=True)
class Config:
  common: base.Common
  selection: str
  widen_c: float
  widen_alpha: float
  c_uct: float
  branch_levels: tuple
  num_steps: int
  batch: int          # B
  batching: str
  capacity: int       # nodes (the root included), enough for any run within the budget
  root_capacity: int  # the root's children: at most budget // M
  max_rollouts: int   # budget // (cheapest rollout): the length of the trace
  max_selections: int

  @property
  def depth(self) -> int:  # D: the number of branch depths below the root
    return len(self.branch_levels)

  @property
  def num_slots(self):
    """The rows split over the mesh: the B slots (None for B = 1, which runs replicated)."""
    return self.batch if self.batch > 1 else None

  @property
  def num_blocks(self) -> int:
    return self.capacity + self.capacity // BLOCK + 1

  @property
  def root_chunk(self) -> int:
    return min(ROOT_CHUNK, self.root_capacity + 1)

  @property
  def root_slots(self) -> int:  # root_capacity + a scratch entry, padded to whole chunks
    return -(-(self.root_capacity + 1) // self.root_chunk) * self.root_chunk

  @property
  def root_chunks(self) -> int:
    return self.root_slots // self.root_chunk

  def rollout_cost(self, depth: int) -> int:
    """NFEs of an expansion from a node at `depth` (the root's child starts from noise)."""
    return self.num_steps if depth == 0 else self.num_steps - 1 - self.branch_levels[depth - 1]

  @classmethod
  def from_config(cls, cfg, temperature, num_steps, method):
    common = base.Common.from_config(cfg, temperature)
    base.check_steps(method.name, num_steps)
    selection = cfg.tree_selection or _DEFAULT_SELECTION.get(method.name, 'softmax')
    if selection not in SELECTIONS:
      raise ValueError(f'Unknown search.tree_selection {selection!r}; '
                       f'valid: {", ".join(SELECTIONS)}.')
    every = max(1, num_steps // 5) if cfg.branch_every is None else int(cfg.branch_every)
    if every < 1:
      raise ValueError(f'search.branch_every must be >= 1, got {every}.')
    levels = tuple(range(0, num_steps - 1, every))
    widen_c, widen_alpha = float(cfg.widen_c), float(cfg.widen_alpha)
    if not (np.isfinite(widen_c) and widen_c > 0) or not 0 < widen_alpha <= 1:
      raise ValueError(f'progressive widening needs widen_c > 0 and 0 < widen_alpha <= 1, got '
                       f'{widen_c} and {widen_alpha}.')
    c_uct = float(cfg.c_uct)
    if not (np.isfinite(c_uct) and c_uct >= 0):
      raise ValueError(f'search.c_uct must be a finite number >= 0, got {c_uct}.')
    batch = cfg.get('dts_batch', 1)
    if not isinstance(batch, int) or batch < 1:
      raise ValueError(f'search.dts_batch must be a positive integer, got {batch!r}.')
    batching = cfg.get('dts_batching', 'continuous')
    if batching not in BATCHINGS:
      raise ValueError(f'Unknown search.dts_batching {batching!r}; '
                       f'valid: {", ".join(BATCHINGS)}.')
    if common.budget < num_steps:
      raise base.too_small(method.name, common.budget, num_steps,
                           f'one rollout of {num_steps} steps')
    partial = cls(common, selection, widen_c, widen_alpha, c_uct, levels, num_steps, batch,
                  batching, 0, 0, 0, 0)
    budget, depth = common.budget, len(levels)
    # An expansion from depth d costs rollout_cost(d) NFEs and adds D + 1 - d nodes, so no run
    # within the budget holds more than 1 + max_d floor(budget (D + 1 - d) / cost(d)) nodes.
    nodes = max(budget * (depth + 1 - d) // partial.rollout_cost(d) for d in range(depth + 1))
    rollouts = budget // partial.rollout_cost(depth)
    return dataclasses.replace(
        partial, capacity=1 + nodes, root_capacity=budget // num_steps + 1,
        max_rollouts=rollouts, max_selections=4 * rollouts + 8 + batch)


def memory_bytes(config: Config, data_shape) -> int:
  """Bytes of the preallocated tree and slots of a run (what `run` allocates beyond the
  backbone): per node one float32 state row and eight int32/float32 fields; the block lists;
  per slot a state row and its evaluation; the trace. experiments/search_memory.py refuses a
  tree that would not fit before compiling."""
  row = 4 * math.prod(data_shape)
  tree = (config.capacity + 1) * (row + 8 * 4) + (config.num_blocks + 1) * (BLOCK + 1) * 4
  tree += config.root_slots * 4 + config.root_chunks * 5 * 4
  slots = config.batch * (6 * row + 12 * 4)
  return tree + slots + 2 * 4 * (config.max_rollouts + 1)


@struct.dataclass
class Tree:
  """The search tree in flat arrays; node 0 is the root, nodes >= size are unused, and index
  `capacity` is a scratch row that absorbs masked writes. Per node: data (a branch node's step
  mean, a terminal node's x0) [capacity + 1, *data_shape], parent (-1 at the root), depth,
  value (soft value; r(x0) at terminal nodes), visits, children (backed-up children), pending
  (children in flight) and its child list's first and last block. The root's children are
  root_kids[:children[0]], read in chunks of config.root_chunk, each summarised in root_stats
  (dts._chunk_stats) so that the root's selection reads the summaries and one chunk (softmax)
  or the few chunks whose bound beats the best (uct); rank is a root child's place in root_kids.
  A block holds BLOCK child ids and the next block's index."""
  data: jax.Array
  parent: jax.Array
  depth: jax.Array
  value: jax.Array
  visits: jax.Array
  children: jax.Array
  pending: jax.Array
  first_block: jax.Array
  last_block: jax.Array
  block_kids: jax.Array   # [num_blocks + 1, BLOCK]
  block_next: jax.Array   # [num_blocks + 1]
  num_blocks: jax.Array
  root_kids: jax.Array    # [root_slots]
  root_stats: jax.Array   # [root_chunks, 5]
  rank: jax.Array
  size: jax.Array         # nodes in use or reserved by rollouts in flight

  @classmethod
  def empty(cls, config: Config, shape) -> 'Tree':
    n, nb = config.capacity + 1, config.num_blocks + 1
    full = lambda size, v: jnp.full(size, v, jnp.int32)
    return cls(data=jnp.zeros((n,) + tuple(shape), jnp.float32), parent=full(n, -1),
               depth=full(n, 0), value=jnp.zeros(n), visits=full(n, 0).at[0].set(1),
               children=full(n, 0), pending=full(n, 0), first_block=full(n, -1),
               last_block=full(n, -1), block_kids=full((nb, BLOCK), 0), block_next=full(nb, -1),
               num_blocks=jnp.int32(0), root_kids=full(config.root_slots, 0),
               root_stats=jnp.zeros((config.root_chunks, 5)), rank=full(n, 0),
               size=jnp.int32(1))

  def widened(self, node, config: Config):
    """Progressive widening: fully widened once children, in flight ones included, reach
    C * visits^alpha, and at least one child has been backed up (there is one to descend to)."""
    limit = config.widen_c * self.visits[node].astype(jnp.float32) ** config.widen_alpha
    return ((self.children[node] + self.pending[node]) >= limit) & (self.children[node] > 0)

  def fold_children(self, node, fn, carry, until=None):
    """Folds fn(carry, ids [BLOCK], valid [BLOCK]) over the children of `node` (not the root,
    whose selection reads its chunk summaries) block by block, in the order they were added,
    stopping early once until(carry) holds. Costs O(children / BLOCK) steps."""
    count = self.children[node]
    until = until or (lambda c: jnp.bool_(False))

    def cond(s):
      block, _, c = s
      return (block >= 0) & ~until(c)

    def body(s):
      block, seen, c = s
      valid = seen + jnp.arange(BLOCK) < count
      ids = jnp.where(valid, self.block_kids[block], 0)
      return self.block_next[block], seen + BLOCK, fn(c, ids, valid)
    # The first block inline (most nodes have at most BLOCK children), then the rest.
    first = self.first_block[node]
    state = body((jnp.maximum(first, 0), jnp.int32(0), carry))
    state = (jnp.where(first >= 0, state[0], -1),) + state[1:]
    return jax.lax.while_loop(cond, body, state)[2]

  def child_at(self, node, j):
    """The j-th child (0-based, in the order added) of `node`."""
    def walk(s):
      block, left = s
      return self.block_next[block], left - BLOCK
    block, left = jax.lax.while_loop(lambda s: s[1] >= BLOCK, walk,
                                     (jnp.maximum(self.first_block[node], 0), j))
    return jnp.where(node == 0, self.root_kids[jnp.minimum(j, self.root_kids.shape[0] - 1)],
                     self.block_kids[block, jnp.minimum(left, BLOCK - 1)])

  def selectable_value(self, ids):
    """Values of nodes `ids` for selection: an invalid (-inf) value becomes _LOW, so a node
    whose children are all invalid still selects among them uniformly."""
    return jnp.where(jnp.isfinite(self.value[ids]), self.value[ids], _LOW)

  def log_mean_exp(self, node, config: Config):
    """lam * (logsumexp(children's values / lam) - log |children|): a node's soft value."""
    lam = config.common.temperature

    def top(m, ids, valid):
      return jnp.maximum(m, jnp.max(jnp.where(valid, self.value[ids] / lam, -jnp.inf)))
    m = self.fold_children(node, top, jnp.float32(-jnp.inf))
    m = jnp.where(jnp.isfinite(m), m, 0.0)

    def total(s, ids, valid):
      return s + jnp.sum(jnp.where(valid, jnp.exp(self.value[ids] / lam - m), 0.0))
    s = self.fold_children(node, total, jnp.float32(0.0))
    return lam * (jnp.log(s) + m - jnp.log(self.children[node].astype(jnp.float32)))


def _chunk_stats(tree: Tree, ids, valid, config: Config):
  """A root chunk's summary [5]: its max logit v / lam, the sum of exp(logit - max), the max
  UCT score at the root's current visit count, the max 1 / sqrt(visits), and that count's
  c_uct sqrt(log N) (the score's exploration factor)."""
  lam = config.common.temperature
  v = tree.selectable_value(ids)
  logits = jnp.where(valid, v / lam, -jnp.inf)
  m = jnp.max(logits)
  visits = jnp.maximum(tree.visits[ids], 1)
  log_n = jnp.log(tree.visits[0].astype(jnp.float32))
  score = jnp.where(valid, v + config.c_uct * jnp.sqrt(log_n / visits), -jnp.inf)
  return jnp.stack([m, jnp.sum(jnp.where(valid, jnp.exp(logits - m), 0.0)), jnp.max(score),
                    jnp.max(jnp.where(valid, jax.lax.rsqrt(visits.astype(jnp.float32)),
                                      -jnp.inf)),
                    config.c_uct * jnp.sqrt(log_n)])


def refresh_root_chunk(tree: Tree, child, config: Config) -> Tree:
  """Recomputes the summary (Tree.root_stats) of the root chunk holding root child `child`,
  after its value or visits changed. O(root_chunk)."""
  if config.selection == 'uniform':  # indexes the root's children directly
    return tree
  c = tree.rank[child] // config.root_chunk
  ids, valid = _root_chunk_ids(tree, c, config)
  return tree.replace(root_stats=tree.root_stats.at[c].set(_chunk_stats(tree, ids, valid,
                                                                         config)))


def refresh_root_chunks(tree: Tree, config: Config) -> Tree:
  """Recomputes every root chunk's summary (for UCT, whose scores all move with the root's
  visit count; the bounds stay valid in between, only looser). O(root's children)."""
  k = config.root_chunk
  ids = tree.root_kids.reshape(config.root_chunks, k)
  valid = jnp.arange(config.root_slots).reshape(config.root_chunks, k) < tree.children[0]
  stats = jax.vmap(lambda i, v: _chunk_stats(tree, i, v, config))(jnp.where(valid, ids, 0), valid)
  return tree.replace(root_stats=stats)


def _root_chunk_ids(tree: Tree, c, config: Config):
  k = config.root_chunk
  valid = c * k + jnp.arange(k) < tree.children[0]
  return jnp.where(valid, jax.lax.dynamic_slice(tree.root_kids, (c * k,), (k,)), 0), valid


def _draw(weights, valid, u):
  """Index of the inverse-CDF draw u in [0, 1) over weights (the last valid one on rounding)."""
  cdf = jnp.cumsum(weights)
  hit = valid & (cdf > u * cdf[-1])
  last = jnp.max(jnp.where(valid, jnp.arange(weights.shape[0]), 0))
  return jnp.where(jnp.any(hit), jnp.argmax(hit), last)


def _root_softmax(tree: Tree, key, config: Config):
  """softmax(v / lam) over the root's children in two stages, each exact: a chunk by its
  total weight exp(max) * sum (from root_stats), then a child within it."""
  lam, stats = config.common.temperature, tree.root_stats
  live = jnp.arange(config.root_chunks) * config.root_chunk < tree.children[0]
  chunk_logits = jnp.where(live, stats[:, 0] + jnp.log(stats[:, 1]), -jnp.inf)
  c = _draw(jnp.where(live, jnp.exp(chunk_logits - jnp.max(chunk_logits)), 0.0), live,
            jax.random.uniform(key))
  ids, valid = _root_chunk_ids(tree, c, config)
  v = tree.selectable_value(ids)
  weights = jnp.where(valid, jnp.exp(v / lam - stats[c, 0]), 0.0)
  return ids[_draw(weights, valid, jax.random.uniform(jax.random.fold_in(key, 1)))]


def _root_uct(tree: Tree, config: Config):
  """argmax of the UCT score over the root's children. A chunk's scores at the current visit
  count N are at most its score max at the count of its last summary plus the growth of the
  exploration factor c sqrt(log N) times its max 1 / sqrt(n) (N only grows; a child's own
  visits or value changing refreshes its chunk). The chunks are scanned exactly in order of
  that bound until no bound is above the best score found (ties go to the earlier child, as
  in one pass over them all)."""
  stats, k = tree.root_stats, config.root_chunk
  log_n = jnp.log(tree.visits[0].astype(jnp.float32))
  live = jnp.arange(config.root_chunks) * k < tree.children[0]
  bound = stats[:, 2] + (config.c_uct * jnp.sqrt(log_n) - stats[:, 4]) * stats[:, 3]
  bound = jnp.where(live, bound + 1e-5 * jnp.abs(bound) + 1e-6, -jnp.inf)  # rounding margin

  def cond(s):
    best, _, _, done = s
    return jnp.any(~done & (bound >= best))

  def body(s):
    best, best_id, best_pos, done = s
    c = jnp.argmax(jnp.where(done, -jnp.inf, bound))
    ids, valid = _root_chunk_ids(tree, c, config)
    v = tree.selectable_value(ids)
    score = v + config.c_uct * jnp.sqrt(log_n / jnp.maximum(tree.visits[ids], 1))
    score = jnp.where(valid, score, -jnp.inf)
    i = jnp.argmax(score)
    pos = c * k + i
    better = (score[i] > best) | ((score[i] == best) & (pos < best_pos))
    return (jnp.where(better, score[i], best), jnp.where(better, ids[i], best_id),
            jnp.where(better, pos, best_pos), done.at[c].set(True))
  init = (jnp.float32(-jnp.inf), jnp.int32(0), jnp.int32(2**30), ~live)
  return jax.lax.while_loop(cond, body, init)[1]


def pick_child(tree: Tree, node, key, config: Config):
  """One backed-up child of `node` by the configured selection rule."""
  if config.selection != 'uniform':
    at_root = (lambda: _root_uct(tree, config)) if config.selection == 'uct' else (
        lambda: _root_softmax(tree, key, config))
    return jax.lax.cond(node == 0, at_root, lambda: _pick_below_root(tree, node, key, config))
  return _pick_below_root(tree, node, key, config)


def _pick_below_root(tree: Tree, node, key, config: Config):
  lam = config.common.temperature
  value = tree.selectable_value
  n = tree.children[node]
  if config.selection == 'uct':
    log_n = jnp.log(tree.visits[node].astype(jnp.float32))

    def best(c, ids, valid):
      score = value(ids) + config.c_uct * jnp.sqrt(log_n / jnp.maximum(tree.visits[ids], 1))
      score = jnp.where(valid, score, -jnp.inf)
      i = jnp.argmax(score)
      better = score[i] > c[0]
      return jnp.where(better, score[i], c[0]), jnp.where(better, ids[i], c[1])
    return tree.fold_children(node, best, (jnp.float32(-jnp.inf), jnp.int32(0)))[1]
  # softmax(value / lambda) or uniform over the children, by one uniform and the inverse CDF.
  u = jax.random.uniform(key)
  if config.selection == 'uniform':
    j = jnp.minimum(jnp.floor(u * n.astype(jnp.float32)).astype(jnp.int32), n - 1)
    return tree.child_at(node, j)

  def top(m, ids, valid):
    return jnp.maximum(m, jnp.max(jnp.where(valid, value(ids) / lam, -jnp.inf)))
  m = tree.fold_children(node, top, jnp.float32(-jnp.inf))
  weights = lambda ids, valid: jnp.where(valid, jnp.exp(value(ids) / lam - m), 0.0)
  total = tree.fold_children(node, lambda s, ids, valid: s + jnp.sum(weights(ids, valid)),
                             jnp.float32(0.0))
  target = u * total

  def find(c, ids, valid):  # c = (cumulative weight before this chunk, found, child)
    w = weights(ids, valid)
    cdf = c[0] + jnp.cumsum(w)
    hit = valid & (cdf > target)
    last = jnp.max(jnp.where(valid, jnp.arange(w.shape[0]), 0))
    i = jnp.where(jnp.any(hit), jnp.argmax(hit), last)  # rounding: the last child at worst
    return cdf[-1], jnp.any(hit), ids[i]
  return tree.fold_children(node, find, (jnp.float32(0.0), jnp.bool_(False), jnp.int32(0)),
                            until=lambda c: c[1])[2]


def select(tree: Tree, key, config: Config):
  """Descends from the root while the node is non-terminal and fully widened: (node, path
  [D + 2] of the nodes from the root to it, padded with `capacity`)."""
  terminal = config.depth + 1
  path = jnp.full(terminal + 1, config.capacity, jnp.int32).at[0].set(0)

  def cond(state):
    node, _, _ = state
    return (tree.depth[node] < terminal) & tree.widened(node, config)

  def body(state):
    node, i, path = state
    child = pick_child(tree, node, jax.random.fold_in(key, i), config)
    return child, i + 1, path.at[i + 1].set(child)
  node, _, path = jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.int32(0), path))
  return node, path


def backup(tree: Tree, origin, d0, first, reward, config: Config) -> Tree:
  """Sets the new leaf's value to its reward and backs up: every node between it and the root
  takes the log-mean-exp of its children's values (the root's value is never read). The new
  chain's nodes (first, ... at depths d0 + 1 .. D + 1) have one child each, whose log-mean-exp
  lam * (v / lam) needs no pass over children; origin and its ancestors take the full one.
  Visits were added at selection."""
  lam, terminal = config.common.temperature, config.depth + 1
  count = terminal - d0
  values, v = [None] * terminal, reward
  for j in reversed(range(terminal)):  # static: the chain's depths, deepest first
    values[j] = v
    v = jnp.where(j < count, lam * (v / lam), v)
  j = jnp.arange(terminal)
  chain = jnp.where(j < count, first + count - 1 - j, tree.value.shape[0] - 1)
  tree = tree.replace(value=tree.value.at[chain].set(jnp.stack(values[::-1])))

  def body(state):
    tree, node, _ = state
    tree = tree.replace(value=tree.value.at[node].set(tree.log_mean_exp(node, config)))
    return tree, tree.parent[node], node
  # `top` ends as the path's depth-1 node (the new chain's first when origin is the root).
  tree, _, top = jax.lax.while_loop(lambda st: st[0].depth[st[1]] > 0, body,
                                    (tree, origin, first))
  return refresh_root_chunk(tree, top, config)


def link_chain(tree: Tree, origin, d0, first, config: Config) -> Tree:
  """Links a finished rollout's nodes first, first + 1, ... (depths d0 + 1 .. D + 1, each the
  child of the one before) under `origin`: one child-list append for origin, the rest as
  vectorized writes (each chain node gets one fresh block holding its child)."""
  terminal = config.depth + 1
  count = terminal - d0
  tree = add_child(tree, origin, first)
  j = jnp.arange(terminal)
  no_node, no_block = tree.parent.shape[0] - 1, tree.block_next.shape[0] - 1
  ids = jnp.where(j < count, first + j, no_node)
  inner = jnp.where(j < count - 1, first + j, no_node)
  blocks = tree.num_blocks + j
  return tree.replace(
      parent=tree.parent.at[ids].set(jnp.where(j == 0, origin, first + j - 1)),
      depth=tree.depth.at[ids].set(d0 + 1 + j), visits=tree.visits.at[ids].set(1),
      children=tree.children.at[inner].set(1), first_block=tree.first_block.at[inner].set(blocks),
      last_block=tree.last_block.at[inner].set(blocks),
      block_kids=tree.block_kids.at[jnp.where(j < count - 1, blocks, no_block), 0].set(
          first + j + 1),
      num_blocks=tree.num_blocks + count - 1)


def read_first(read, witness):
  """read() (scalar reads of the tree), computed inside a one-trip while_loop whose trip count
  XLA cannot see (witness >= 1 at run time). The loop's results are materialized before the
  arrays they came from are updated in place; read directly, XLA fuses the reads into later
  ops and must then copy the whole array on every update (measured: O(capacity) per node)."""
  init = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(read))
  return jax.lax.while_loop(lambda c: c[0] < jnp.minimum(witness, 1),
                            lambda c: (c[0] + 1, read()), (jnp.int32(0), init))[1]


def add_child(tree: Tree, parent, child) -> Tree:
  """Appends `child` to `parent`'s child list: the root's array, or the last block (a new one
  when it is full). Branch-free: the writes that do not apply go to the scratch entries."""
  count, prev, num_blocks = read_first(
      lambda: (tree.children[parent], tree.last_block[parent], tree.num_blocks), tree.size)
  at_root = parent == 0
  fresh = ~at_root & (count % BLOCK == 0)
  block = jnp.where(fresh, num_blocks, prev)
  no_block, no_node = tree.block_next.shape[0] - 1, tree.parent.shape[0] - 1
  return tree.replace(
      root_kids=tree.root_kids.at[jnp.where(at_root, count, tree.root_kids.shape[0] - 1)].set(
          child),
      rank=tree.rank.at[jnp.where(at_root, child, no_node)].set(count),
      block_kids=tree.block_kids.at[jnp.where(at_root, no_block, block), count % BLOCK].set(
          child),
      block_next=tree.block_next.at[jnp.where(fresh & (prev >= 0), prev, no_block)].set(block),
      first_block=tree.first_block.at[jnp.where(fresh & (count == 0), parent, no_node)].set(
          block),
      last_block=tree.last_block.at[jnp.where(at_root, no_node, parent)].set(block),
      num_blocks=num_blocks + fresh.astype(jnp.int32),
      children=tree.children.at[parent].add(1))


def draw_weights(tree: Tree, config: Config, lam: float):
  """(leaves mask, log-weights) of the sample draw: r(leaf) / lambda - sum over the leaf's
  ancestors of log |children|, which equals descending from the root by softmax(v / lambda)."""
  cap, terminal = config.capacity, config.depth + 1
  parent, depth = tree.parent[:cap], tree.depth[:cap]
  value = tree.value[:cap]
  leaves = (depth == terminal) & (jnp.arange(cap) < tree.size)
  log_children = jnp.log(jnp.maximum(tree.children[:cap], 1).astype(jnp.float32))
  acc, anc = jnp.zeros(cap), parent
  for _ in range(terminal):
    acc = acc + jnp.where(anc >= 0, log_children[jnp.maximum(anc, 0)], 0.0)
    anc = jnp.where(anc >= 0, parent[jnp.maximum(anc, 0)], -1)
  log_w = jnp.where(leaves & jnp.isfinite(value), value / lam - acc, -jnp.inf)
  return leaves, log_w


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
  sigma0 = sampler.interpolant.sigma(sampler.grid[0])
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
    s = s._replace(tree=tree, slots=slots, nfe=s.nfe + jnp.sum(s.slots.active),
                   nfe_evaluated=s.nfe_evaluated + nb,
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

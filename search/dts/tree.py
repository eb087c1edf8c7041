"""DTS's indexed tree in flat arrays: nodes, child lists in blocks, the root's children in
chunks with their summaries (RootStats), and the operations that change it: linking a finished
rollout, backing up values, refreshing the root's summaries."""

from typing import NamedTuple

from flax import struct
import jax
import jax.numpy as jnp

from search.dts.config import BLOCK
from search.dts.config import Config
from search.dts.config import LOW

class RootStats(NamedTuple):
  """The summaries of the root's chunks of children, one entry per chunk [root_chunks]."""
  max_logit: jax.Array   # the largest logit v / lambda of the chunk's children
  exp_sum: jax.Array     # the sum of exp(logit - max_logit): the chunk's softmax weight
  max_score: jax.Array   # the largest UCT score, at the root's visit count of the summary
  max_rsqrt: jax.Array   # the largest 1 / sqrt(visits) of the chunk's children
  explore: jax.Array     # c_uct sqrt(log N) at that visit count


@struct.dataclass
class Tree:
  """The search tree in flat arrays; node 0 is the root, nodes >= size are unused, and index
  `capacity` is a scratch row that absorbs masked writes. Per node: data (a branch node's step
  mean, a terminal node's x0) [capacity + 1, *data_shape], parent (-1 at the root), depth,
  value (soft value; r(x0) at terminal nodes), visits, children (backed-up children), pending
  (children in flight) and its child list's first and last block. The root's children are
  root_kids[:children[0]], read in chunks of config.root_chunk, each summarised in root_stats
  (RootStats) so that the root's selection reads the summaries and one chunk (softmax)
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
  root_stats: RootStats  # [root_chunks] each
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
               root_stats=RootStats(*(jnp.zeros(config.root_chunks)
                                      for _ in RootStats._fields)), rank=full(n, 0),
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
    """Values of nodes `ids` for selection: an invalid (-inf) value becomes LOW, so a node
    whose children are all invalid still selects among them uniformly."""
    return jnp.where(jnp.isfinite(self.value[ids]), self.value[ids], LOW)

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


def _chunk_stats(tree: Tree, ids, valid, config: Config) -> RootStats:
  """A root chunk's summary (scalars): its max logit v / lam, the sum of exp(logit - max), the
  max UCT score at the root's current visit count, the max 1 / sqrt(visits), and that count's
  c_uct sqrt(log N) (the score's exploration factor)."""
  lam = config.common.temperature
  v = tree.selectable_value(ids)
  logits = jnp.where(valid, v / lam, -jnp.inf)
  m = jnp.max(logits)
  visits = jnp.maximum(tree.visits[ids], 1)
  log_n = jnp.log(tree.visits[0].astype(jnp.float32))
  score = jnp.where(valid, v + config.c_uct * jnp.sqrt(log_n / visits), -jnp.inf)
  return RootStats(
      max_logit=m, exp_sum=jnp.sum(jnp.where(valid, jnp.exp(logits - m), 0.0)),
      max_score=jnp.max(score),
      max_rsqrt=jnp.max(jnp.where(valid, jax.lax.rsqrt(visits.astype(jnp.float32)), -jnp.inf)),
      explore=config.c_uct * jnp.sqrt(log_n))


def refresh_root_chunk(tree: Tree, child, config: Config) -> Tree:
  """Recomputes the summary (Tree.root_stats) of the root chunk holding root child `child`,
  after its value or visits changed. O(root_chunk)."""
  if config.selection == 'uniform':  # indexes the root's children directly
    return tree
  c = tree.rank[child] // config.root_chunk
  ids, valid = root_chunk_ids(tree, c, config)
  return tree.replace(root_stats=jax.tree.map(lambda a, v: a.at[c].set(v), tree.root_stats,
                                              _chunk_stats(tree, ids, valid, config)))


def refresh_root_chunks(tree: Tree, config: Config) -> Tree:
  """Recomputes every root chunk's summary (for UCT, whose scores all move with the root's
  visit count; the bounds stay valid in between, only looser). O(root's children)."""
  k = config.root_chunk
  ids = tree.root_kids.reshape(config.root_chunks, k)
  valid = jnp.arange(config.root_slots).reshape(config.root_chunks, k) < tree.children[0]
  stats = jax.vmap(lambda i, v: _chunk_stats(tree, i, v, config))(jnp.where(valid, ids, 0), valid)
  return tree.replace(root_stats=stats)


def root_chunk_ids(tree: Tree, c, config: Config):
  k = config.root_chunk
  valid = c * k + jnp.arange(k) < tree.children[0]
  return jnp.where(valid, jax.lax.dynamic_slice(tree.root_kids, (c * k,), (k,)), 0), valid


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

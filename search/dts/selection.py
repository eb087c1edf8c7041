"""DTS's selection: from the root while the node is fully widened, a child by softmax(v / lambda)
(DTS), uniformly (the unbiased build) or by UCT (DTS*); at the root through its chunk
summaries, below it through the node's child list."""

import jax
import jax.numpy as jnp

from search.dts.config import Config
from search.dts.tree import Tree
from search.dts.tree import root_chunk_ids

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
  chunk_logits = jnp.where(live, stats.max_logit + jnp.log(stats.exp_sum), -jnp.inf)
  c = _draw(jnp.where(live, jnp.exp(chunk_logits - jnp.max(chunk_logits)), 0.0), live,
            jax.random.uniform(key))
  ids, valid = root_chunk_ids(tree, c, config)
  v = tree.selectable_value(ids)
  weights = jnp.where(valid, jnp.exp(v / lam - stats.max_logit[c]), 0.0)
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
  bound = stats.max_score + (config.c_uct * jnp.sqrt(log_n) - stats.explore) * stats.max_rsqrt
  bound = jnp.where(live, bound + 1e-5 * jnp.abs(bound) + 1e-6, -jnp.inf)  # rounding margin

  def cond(s):
    best, _, _, done = s
    return jnp.any(~done & (bound >= best))

  def body(s):
    best, best_id, best_pos, done = s
    c = jnp.argmax(jnp.where(done, -jnp.inf, bound))
    ids, valid = root_chunk_ids(tree, c, config)
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
